"""``structured_mcap``: heads and groups of FFN neurons removed in increasing meta-controller δ, up to
a ratio of ``prune.ratios`` of the encoder's MACs (:func:`mcap.structured.select_learned`).

Not in the paper: MCAP's controller extended to gate FFN neurons, ``mcap.neuron_group_size`` at a time
(:class:`mcap.controller.StructuredMetaController`), trained by its ``controller`` stage with
the selection rule used here. Whole groups are removed, so the budget is met to within one head or group.
"""

import torch

from mcap.budget import UnitCosts
from mcap.strategies.base import LearnedStrategy, PruneContext, PruneOutcome, learned_scores, register
from mcap.structured import remove_units, select_learned


@register
class StructuredMetaController(LearnedStrategy):
    name = "structured_mcap"
    kind = "structured"
    label = "7c. Structured MCAP: heads + FFN neuron groups by meta-controller δ, to a MAC budget (not in paper)"

    def apply(self, context: PruneContext) -> PruneOutcome:
        model, scores = context.model, learned_scores(self.name, context)
        selection = select_learned(scores, model.config.intermediate_size, UnitCosts.of(model.config, context.max_seq_len),
                                   context.ratio)
        remove_units(model, selection)
        return PruneOutcome(kind=self.kind, head_scores=torch.tensor(scores["heads"]), removed_heads=selection.heads,
                            notes=[selection.summary(context.max_seq_len)])
