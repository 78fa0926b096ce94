"""``none``: the unpruned model (the paper's "BERT fine-tuning" row)."""

from mcap.strategies.base import PruneContext, PruneOutcome, Strategy, register


@register
class NoPruning(Strategy):
    name = "none"
    kind = "none"

    def apply(self, context: PruneContext) -> PruneOutcome:
        return PruneOutcome(kind=self.kind)
