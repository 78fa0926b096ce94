"""``none``: the unpruned model (the paper's "BERT fine-tuning" row)."""

from mcap.strategies.base import PruneContext, PruneOutcome, Strategy, register


@register
class NoPruning(Strategy):
    name = "none"
    label = "8. BERT fine-tuning (unpruned)"
    seeded = False  # deterministic: it draws nothing
    kind = "none"

    def apply(self, context: PruneContext) -> PruneOutcome:
        return PruneOutcome(kind=self.kind)
