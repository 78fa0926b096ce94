"""``layer_drop``: the top encoder layers dropped whole, the bottom ones kept (Sajjad et al. 2020, "top-layer
dropping"), then fine-tuned like every pruned model. Not in the paper: the free baseline of every structured method.

Layers are all alike in cost, so the budgets it can meet are whole layers: a ratio of ``prune.ratios`` removes the
most layers whose MACs stay within that fraction of the encoder's (with 6 layers: 1 at 0.2, 3 at 0.5, 4 at 0.7).
It scores nothing and draws nothing.
"""

import math

from mcap.errors import McapError
from mcap.modeling import drop_top_layers
from mcap.strategies.base import PruneContext, PruneOutcome, Strategy, register


@register
class LayerDrop(Strategy):
    name = "layer_drop"
    kind = "structured"
    label = "6d. Top layers dropped (Sajjad et al. 2020; not in paper)"
    seeded = False

    def apply(self, context: PruneContext) -> PruneOutcome:
        layers = context.model.config.num_hidden_layers
        dropped = math.floor(context.ratio * layers + 1e-9)  # whole layers within the budget
        if dropped >= layers:
            raise McapError(f"layer_drop: ratio {context.ratio} would drop all {layers} layers; use a ratio below 1")
        outcome = PruneOutcome(kind=self.kind)
        if dropped == 0:
            outcome.notes.append(f"ratio {context.ratio} is below one layer's share (1/{layers}): nothing dropped")
            return outcome
        drop_top_layers(context.model, layers - dropped)
        outcome.notes.append(f"kept the bottom {layers - dropped} of {layers} layers")
        return outcome
