"""The training loss: the output projection on scored tokens only equals the full-logits loss, and
padding never changes it."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from train_bridge.loss import SFTModule
from train_bridge.model import add_special_tokens, load_model

from helpers.training import first_batch


def test_loss_on_scored_tokens_equals_full_logits_loss(manifest_path: Path, tokenizer) -> None:
    add_special_tokens(tokenizer)
    model = load_model("tiny", tokenizer, image_size=28).eval()
    batch = first_batch(manifest_path, tokenizer)
    with torch.no_grad():
        loss = SFTModule(model, 28)(batch["input_ids"], batch["labels"], batch["images"])
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=batch["images"]
        ).logits
    expected = F.cross_entropy(
        logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100, reduction="sum"
    )
    assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()
    assert torch.allclose(loss, expected, rtol=1e-5), (loss, expected)


def test_padding_never_changes_a_samples_loss(manifest_path: Path, tokenizer) -> None:
    """The batch (right-padded, no attention mask) loses exactly what its samples lose one by one."""
    add_special_tokens(tokenizer)
    module = SFTModule(load_model("tiny", tokenizer, image_size=28).eval(), 28)
    batch = first_batch(manifest_path, tokenizer)
    lengths = batch["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) > 1  # some rows are padded
    images = iter(batch["images"])
    one_by_one = torch.zeros(())
    with torch.no_grad():
        for row, length in enumerate(lengths):
            ids = batch["input_ids"][row : row + 1, :length]
            count = int((ids == tokenizer.convert_tokens_to_ids("<img>")).sum())
            pixels = torch.stack([next(images) for _ in range(count)]) if count else batch["images"][:0]
            one_by_one += module(ids, batch["labels"][row : row + 1, :length], pixels)
        together = module(batch["input_ids"], batch["labels"], batch["images"])
    assert torch.allclose(together, one_by_one, rtol=1e-5), (together, one_by_one)
