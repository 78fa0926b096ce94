"""``head_gradient``: Michel et al. 2019, importance I_h = sum over examples of |dL/d mask_h|.

Not in the paper: it is the strongest well-known head criterion and our honest bar for MCAP.
Pruning happens before fine-tuning, when the 2-class head is still random and the task loss
says nothing; so a linear probe (only the classifier head, ``prune.gradient_probe_steps`` steps)
is fitted first, the gradients are taken through it, and the model is then restored, so
fine-tuning starts from the same weights as every other strategy. Scores are L2-normalised per
layer, as in Michel et al.'s code, before the global ranking.
"""

import copy

import torch

from mcap.heads import head_layout, masked_heads
from mcap.modeling import task_head_parameters
from mcap.strategies.base import HeadStrategy, PruneContext, register, short_training
from mcap.training import batches_on, make_loader


def gradient_importance(context: PruneContext) -> torch.Tensor:
    """(layers, heads) sum of |dL/dm| over the importance examples, with the mask m at 1."""
    model = context.model.eval()  # no dropout: the gradient of the deterministic model
    layout = head_layout(model)
    device = next(model.parameters()).device  # short_training may have moved the model (accelerate)
    mask = torch.ones(len(layout), len(layout[0]), device=device, requires_grad=True)
    importance = torch.zeros_like(mask)
    loader = make_loader(context.tokenizer, context.importance_examples(), context.batch_size, context.max_seq_len)
    for batch in batches_on(loader, next(model.parameters()).device):
        with masked_heads(model, mask):
            loss = model(**batch).loss
        (gradient,) = torch.autograd.grad(loss, mask)
        importance += gradient.abs()
    return importance


def normalised_per_layer(importance: torch.Tensor) -> torch.Tensor:
    """(layers, heads) scores divided by each layer's L2 norm (Michel et al.'s code), before the global ranking."""
    return importance / importance.norm(dim=1, keepdim=True).clamp_min(1e-20)


@register
class GradientHeads(HeadStrategy):
    name = "head_gradient"
    label = "6b. HeadImp: gradient (Michel et al.; not in paper)"

    def score_heads(self, context: PruneContext) -> torch.Tensor:
        initial = copy.deepcopy(context.model.state_dict())
        short_training(context, context.settings.gradient_probe_steps, context.settings.gradient_probe_lr,
                       task_head_parameters(context.model))
        importance = gradient_importance(context)
        context.model.load_state_dict(initial)
        return normalised_per_layer(importance)
