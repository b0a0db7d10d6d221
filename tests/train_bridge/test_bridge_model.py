"""Presets, special tokens and embedding resizing."""

from __future__ import annotations

import pytest
import torch
from transformers import InternVLForConditionalGeneration

from train_bridge.model import add_special_tokens, image_geometry, load_model, preset_config
from train_bridge.template import SPECIAL_TOKENS


@pytest.mark.parametrize(("name", "billions"), [("small", 0.80), ("v1_2", 40.07)])
def test_preset_shapes(name: str, billions: float) -> None:
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(preset_config(name, vocab_size=1000))
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(billions, abs=0.01)
    assert image_geometry(model) == (448, 256)


def test_missing_tokens_are_added_and_embeddings_resized(tokenizer) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.train_from_iterator(["plain text only"] * 20, trainers.BpeTrainer(vocab_size=300))
    bare = PreTrainedTokenizerFast(tokenizer_object=core)
    before = len(bare)
    assert add_special_tokens(bare) == len(SPECIAL_TOKENS)
    assert len(bare) == before + len(SPECIAL_TOKENS) and bare.pad_token == "<|im_end|>"
    assert all(
        len(bare("x" + token + "y", add_special_tokens=False)["input_ids"]) == 3 for token in SPECIAL_TOKENS
    )
    assert add_special_tokens(tokenizer) == 0
    model = load_model("tiny", bare, image_size=28)
    assert model.get_input_embeddings().num_embeddings >= len(bare)
    assert model.config.image_token_id == bare.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert image_geometry(model) == (28, 1)


def test_local_folder_round_trip(tmp_path, tokenizer) -> None:
    model = load_model("tiny", tokenizer, image_size=28)
    model.save_pretrained(tmp_path / "m")
    again = load_model(str(tmp_path / "m"), tokenizer)
    assert torch.equal(again.get_input_embeddings().weight, model.get_input_embeddings().weight)
    with pytest.raises(ValueError, match="neither a preset"):
        load_model(str(tmp_path / "absent"), tokenizer)


def test_activation_checkpointing_is_switched_on_without_deprecated_calls() -> None:
    import warnings

    from train_bridge.train import _enable_activation_checkpointing

    model = InternVLForConditionalGeneration(preset_config("tiny", 500, image_size=28))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        _enable_activation_checkpointing(model)
    assert model.is_activation_checkpointing
