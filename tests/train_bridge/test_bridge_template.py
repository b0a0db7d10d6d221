"""Golden tests of the Hermes-2 rendering and label masks."""

from __future__ import annotations

import pytest

from train_bridge.template import IGNORE_INDEX, encode, image_tokens_per_image, render

MULTI_TURN = [
    {"from": "human", "value": "<image>\nQ?"},
    {"from": "gpt", "value": "A"},
    {"from": "human", "value": "Q2"},
    {"from": "gpt", "value": "A2"},
]
TEXT_ONLY = [{"from": "human", "value": "how many people?"}, {"from": "gpt", "value": "the total"}]
MULTI_IMAGE = [{"from": "human", "value": "<image>\n<image>\ncompare"}, {"from": "gpt", "value": "same"}]


def test_image_token_count() -> None:
    assert image_tokens_per_image(448, 14, 0.5) == 256
    assert image_tokens_per_image(28, 14, 0.5) == 1


def test_render_matches_the_reference() -> None:
    expected = (
        "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\n<image>\nQ?<|im_end|>"
        "<|im_start|>assistant\nA<|im_end|><|im_start|>user\nQ2<|im_end|><|im_start|>assistant\nA2<|im_end|>"
    )
    assert render(MULTI_TURN, num_image_tokens=0).replace("<img></img>", "<image>") == expected
    assert render(MULTI_TURN, num_image_tokens=3).startswith(
        "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\n"
        "<img><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT></img>\nQ?<|im_end|>"
    )
    assert render(TEXT_ONLY, system="Be brief.") == (
        "<|im_start|>system\nBe brief.<|im_end|><|im_start|>user\nhow many people?<|im_end|>"
        "<|im_start|>assistant\nthe total<|im_end|>"
    )


@pytest.mark.parametrize(
    ("conversations", "targets", "images"),
    [
        (MULTI_TURN, "A<|im_end|>A2<|im_end|>", 1),
        (TEXT_ONLY, "the total<|im_end|>", 0),
        (MULTI_IMAGE, "same<|im_end|>", 2),
    ],
)
def test_labels_cover_exactly_the_replies(tokenizer, conversations, targets: str, images: int) -> None:
    encoded = encode(tokenizer, conversations, num_image_tokens=4, max_length=512)
    text = render(conversations, num_image_tokens=4)
    assert encoded.input_ids == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(encoded.labels) == len(encoded.input_ids)
    kept = [label for label in encoded.labels if label != IGNORE_INDEX]
    assert tokenizer.decode(kept) == targets
    context = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert encoded.input_ids.count(context) == 4 * images
    assert encoded.input_ids.count(tokenizer.convert_tokens_to_ids("<img>")) == images
    # every target span is a contiguous run ending at an <|im_end|>
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ends = [
        i
        for i, label in enumerate(encoded.labels)
        if label != IGNORE_INDEX and (i + 1 == len(encoded.labels) or encoded.labels[i + 1] == IGNORE_INDEX)
    ]
    assert all(encoded.input_ids[i] == im_end for i in ends)
    assert len(ends) == len(conversations) // 2


def test_overlong_is_truncated_after_the_last_image_or_dropped(tokenizer) -> None:
    full = encode(tokenizer, MULTI_TURN, num_image_tokens=20, max_length=4096)
    first_target = next(i for i, label in enumerate(full.labels) if label != IGNORE_INDEX)
    cut = encode(tokenizer, MULTI_TURN, num_image_tokens=20, max_length=first_target + 1)
    assert cut.truncated and not cut.dropped
    assert cut.input_ids == full.input_ids[: first_target + 1]
    assert cut.labels[-1] == full.labels[first_target]
    # cutting inside the image tokens, or leaving no target: dropped, never zero-loss
    assert (
        encode(tokenizer, MULTI_TURN, num_image_tokens=20, max_length=30).dropped
        == "images exceed max length"
    )
    assert encode(tokenizer, MULTI_TURN, num_image_tokens=20, max_length=first_target).dropped
    assert encode(
        tokenizer, MULTI_TURN, num_image_tokens=20, max_length=first_target + 1, overlong="drop"
    ).dropped


def metaspace_tokenizer(folder):
    """A SentencePiece-style tokenizer (Metaspace: spaces become `▁`, a `▁` prepended to the text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from train_bridge.template import SPECIAL_TOKENS

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    core.decoder = decoders.Metaspace(prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=list(SPECIAL_TOKENS))
    texts = ["how many people are there", "many people", "the total is many", "system user assistant"]
    core.train_from_iterator(texts * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>")
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.save_pretrained(folder)
    return tokenizer


def test_ids_are_the_whole_prompt_tokenized_once_with_a_sentencepiece_style_tokenizer(tmp_path) -> None:
    tokenizer = metaspace_tokenizer(tmp_path)
    conversations = [
        {"from": "human", "value": "how many people?"},
        {"from": "gpt", "value": "many people"},
        {"from": "human", "value": "the total?"},
        {"from": "gpt", "value": "many"},
    ]
    encoded = encode(tokenizer, conversations, num_image_tokens=0, max_length=512)
    whole = tokenizer(render(conversations), add_special_tokens=False)["input_ids"]
    assert encoded.input_ids == whole
    targets = [
        tokenizer.decode(
            [t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label == t]
        )
    ]
    assert targets == ["many people<|im_end|>many<|im_end|>"]


def test_an_empty_turn_renders_as_its_role_alone_as_the_official_template(tokenizer) -> None:
    """InternVL's MPT-style `get_prompt`: `ret += role + message + sep if message else role`."""
    empty_reply = [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": ""}, *TEXT_ONLY]
    assert render(empty_reply) == (
        "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\nQ?<|im_end|>"
        "<|im_start|>assistant\n<|im_start|>user\nhow many people?<|im_end|>"
        "<|im_start|>assistant\nthe total<|im_end|>"
    )
    encoded = encode(tokenizer, empty_reply, num_image_tokens=0, max_length=512)
    assert (
        tokenizer.decode([label for label in encoded.labels if label != IGNORE_INDEX])
        == "the total<|im_end|>"
    )
    nothing = encode(tokenizer, empty_reply[:2], num_image_tokens=0, max_length=512)
    assert nothing.dropped == "no target (empty replies)" and nothing.input_ids == []
