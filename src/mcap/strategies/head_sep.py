"""``head_sep``: importance = mean attention paid to [SEP] (paper §III.B.4).

As the paper states, the heads paying the *least* attention to [SEP] are removed. Clark et al.
2019 read heavy [SEP] attention as a no-op, which would argue for the opposite order; we follow
the paper, and the strategy table of docs/pipeline.md says so.
"""

import torch

from mcap.strategies.base import HeadStrategy, PruneContext, mean_attention_statistic, register


def attention_to_sep(probs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Probability each query puts on its sentence's final [SEP]: (B, H, L, L) -> (B, H, L)."""
    sep_position = batch["attention_mask"].sum(dim=1) - 1  # (B,) last real token is [SEP]
    index = sep_position[:, None, None, None].expand(-1, probs.shape[1], probs.shape[2], 1)  # (B, H, L, 1)
    return probs.gather(3, index).squeeze(3)


@register
class SepAttentionHeads(HeadStrategy):
    name = "head_sep"
    label = "4. HeadImp: avg attention to [SEP]"
    seeded = False  # deterministic: it draws nothing

    def score_heads(self, context: PruneContext) -> torch.Tensor:
        return mean_attention_statistic(context, attention_to_sep)
