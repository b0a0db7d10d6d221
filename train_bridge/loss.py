"""`SFTModule`: the one forward that DDP and FSDP wrap, returning the summed token loss of a micro-batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from train_bridge.template import IGNORE_INDEX


class SFTModule(nn.Module):
    """Wraps the model so that DDP/FSDP see one forward returning the summed token loss.

    Batches are right-padded, so no attention mask is passed: causal attention already keeps every
    real token from the pads after it, and pad positions are never scored; without a mask, SDPA
    takes its causal fast path (flash/cuDNN kernels, no mask tensor). A micro-batch without images
    still runs the vision tower on one blank image (weight 0), so every parameter gets a gradient
    on every rank, as DDP and FSDP require.
    """

    def __init__(self, model: nn.Module, image_size: int) -> None:
        super().__init__()
        self.model = model
        self.image_size = image_size

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        pixel_values: torch.Tensor,
    ) -> torch.Tensor:
        has_images = pixel_values.shape[0] > 0
        unused = torch.zeros((), device=input_ids.device)
        if not has_images:  # before the language model, so FSDP ranks gather layers in one order
            config = self.model.config
            blank = torch.zeros(1, 3, self.image_size, self.image_size, device=input_ids.device)
            unused = self.model.model.get_image_features(
                pixel_values=blank,
                vision_feature_layer=config.vision_feature_layer,
                vision_feature_select_strategy=config.vision_feature_select_strategy,
            ).pooler_output.sum()
        hidden = self.model.model(
            input_ids=input_ids,
            pixel_values=pixel_values if has_images else None,
            use_cache=False,
        ).last_hidden_state
        targets = labels[:, 1:]
        scored = targets != IGNORE_INDEX  # the output projection runs only where a label is scored
        logits = self.model.lm_head(hidden[:, :-1][scored])
        loss = F.cross_entropy(logits.float(), targets[scored], reduction="sum")
        return loss + 0.0 * unused
