"""The training loss: the output projection on scored tokens only equals the full-logits loss."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from train_bridge.data import Encoder, ShardStream, make_loader
from train_bridge.model import add_special_tokens, load_model
from train_bridge.train import FlopCounter, SFTModule


def first_batch(manifest_path: Path, tokenizer) -> dict:
    encoder = Encoder(tokenizer, image_size=28, num_image_tokens=1, max_length=512, system="s")
    dataset = ShardStream(manifest_path, encoder, batch_size=4, pad_id=tokenizer.pad_token_id)
    return next(iter(make_loader(dataset, num_workers=0)))


def test_loss_on_scored_tokens_equals_full_logits_loss(manifest_path: Path, tokenizer) -> None:
    add_special_tokens(tokenizer)
    model = load_model("tiny", tokenizer, image_size=28).eval()
    batch = first_batch(manifest_path, tokenizer)
    inputs = (batch["input_ids"], batch["attention_mask"], batch["labels"], batch["images"])
    with torch.no_grad():
        loss = SFTModule(model, 28)(*inputs)
        logits = model(input_ids=inputs[0], attention_mask=inputs[1], pixel_values=inputs[3]).logits
    expected = F.cross_entropy(
        logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100, reduction="sum"
    )
    assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()
    assert torch.allclose(loss, expected, rtol=1e-5), (loss, expected)


def test_flops_count_the_output_projection_on_scored_tokens_only(manifest_path: Path, tokenizer) -> None:
    add_special_tokens(tokenizer)
    count = FlopCounter(load_model("tiny", tokenizer, image_size=28))
    batch = first_batch(manifest_path, tokenizer)
    fewer = dict(batch, labels=batch["labels"].clone())
    scored = torch.nonzero(fewer["labels"][:, 1:] != -100)[0]
    fewer["labels"][scored[0], scored[1] + 1] = -100
    assert count(batch) - count(fewer) == 6 * count.head_params
    no_images = dict(batch, images=batch["images"][:0])
    assert count(no_images) < count(batch)
