"""A small ByteLevel BPE tokenizer trained offline, with the ChatML and image tokens as single tokens.

For tests, benchmarks and dry runs where no pretrained tokenizer can be downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from train_bridge.template import SPECIAL_TOKENS


def train_bpe_tokenizer(texts: Iterable[str], folder: Path, vocab_size: int = 2000):
    """Train on `texts`, save under `folder` (loadable with AutoTokenizer) and return it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator([*texts, "Answer the questions. system user assistant\n"], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|im_end|>", eos_token="<|im_end|>")
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.save_pretrained(folder)
    return tokenizer
