"""``head_gradient_ft``: Michel et al. 2019's protocol, the head importance of the *fine-tuned* model.

Not in the paper. ``head_gradient`` scores heads before fine-tuning, through a linear probe fitted in a few steps on
a few hundred sentences; Michel et al. measure I_h = sum over examples of |dL/d mask_h| on the model fine-tuned on the
task. Here the unpruned model is fine-tuned first, as the finetune stage would (``train``'s epochs and schedule, its
first learning rate; the batch order from the pruning seed), its mask gradients are summed over the importance
examples, and the pre-trained weights are restored, so that it prunes before fine-tuning like every other strategy.
It costs one fine-tuning per task and pruning seed: the reference with the compute of a learned ranking that is
trained on the fine-tuning objective. Scores are L2-normalised per layer, as in ``head_gradient``.
"""

import copy

import torch

from mcap.strategies.base import HeadStrategy, PruneContext, fine_tune_in_place, register
from mcap.strategies.head_gradient import gradient_importance, normalised_per_layer

# The scores do not depend on the ratio: one fine-tuning per model, train sentences and pruning seed in a process,
# whatever the number of ratios the prune stage prunes to.
_SCORES: dict[tuple, torch.Tensor] = {}


def _fingerprint(context: PruneContext) -> tuple:
    """What the scores depend on: the task, the pruning seed, the train sentences and the starting weights."""
    weights = tuple(float(value.double().sum()) for value in context.model.state_dict().values())
    return context.task, context.seed, tuple(context.train["sentence"]), weights


@register
class FineTunedGradientHeads(HeadStrategy):
    name = "head_gradient_ft"
    label = "6e. HeadImp: gradient after fine-tuning (Michel et al.; not in paper)"

    def score_heads(self, context: PruneContext) -> torch.Tensor:
        key = _fingerprint(context)
        if key not in _SCORES:
            initial = copy.deepcopy(context.model.state_dict())
            fine_tune_in_place(context)
            _SCORES[key] = normalised_per_layer(gradient_importance(context)).cpu()
            context.model.load_state_dict(initial)
        return _SCORES[key]
