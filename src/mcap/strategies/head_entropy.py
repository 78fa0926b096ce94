"""``head_entropy``: importance = mean attention entropy; low-entropy heads go first (paper §III.B.5)."""

import torch

from mcap.strategies.base import HeadStrategy, PruneContext, mean_attention_statistic, register


def attention_entropy(probs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Entropy (nats) of each query's attention distribution: (B, H, L, L) -> (B, H, L)."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=-1)


@register
class EntropyHeads(HeadStrategy):
    name = "head_entropy"
    label = "5. HeadImp: attention entropy"
    seeded = False  # deterministic: it draws nothing

    def score_heads(self, context: PruneContext) -> torch.Tensor:
        return mean_attention_statistic(context, attention_entropy)
