"""``head_random``: remove seeded random heads (paper §III.B.6)."""

import torch

from mcap.heads import head_layout
from mcap.strategies.base import HeadStrategy, PruneContext, register


@register
class RandomHeads(HeadStrategy):
    name = "head_random"
    label = "6. Random head pruning"

    def score_heads(self, context: PruneContext) -> torch.Tensor:
        layout = head_layout(context.model)
        generator = torch.Generator().manual_seed(context.seed)
        return torch.rand(len(layout), len(layout[0]), generator=generator, device="cpu")
