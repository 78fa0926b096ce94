"""``structured_gradient``: heads and FFN neurons ranked together by the Fisher importance of their masks
(Kwon et al. 2022, its diagonal), removed least important per MAC up to a ratio of ``prune.ratios`` of the encoder's
MACs (:mod:`mcap.structured`).

Not in the paper. Before fine-tuning the 2-class head is random, so, as ``head_gradient`` does, a
linear probe (the classifier head alone, ``prune.gradient_probe_steps`` steps) is fitted first, the
gradients are taken through it, and the model is then restored: fine-tuning starts from the same
weights as every other strategy's. There is no mask tuning: fine-tuning adapts the survivors.
"""

import copy

import torch

from mcap.budget import UnitCosts
from mcap.modeling import task_head_parameters
from mcap.strategies.base import PruneContext, PruneOutcome, Strategy, register, short_training
from mcap.structured import remove_units, select_units, unit_statistics
from mcap.training import batches_on, make_loader


@register
class StructuredGradient(Strategy):
    name = "structured_gradient"
    kind = "structured"
    label = "6c. Structured: heads + FFN neurons by Fisher, to a MAC budget (Kwon et al.; not in paper)"

    def apply(self, context: PruneContext) -> PruneOutcome:
        model = context.model
        initial = copy.deepcopy(model.state_dict())
        short_training(context, context.settings.gradient_probe_steps, context.settings.gradient_probe_lr,
                       task_head_parameters(model))
        loader = make_loader(context.tokenizer, context.importance_examples(), context.batch_size, context.max_seq_len)
        statistics = unit_statistics(model, batches_on(loader, next(model.parameters()).device))
        model.load_state_dict(initial)
        head_fisher = torch.stack(statistics.head_fisher).float()  # (layers, heads)
        selection = select_units(head_fisher, statistics.neuron_fisher, UnitCosts.of(model.config, context.max_seq_len),
                                 context.ratio)
        remove_units(model, selection)
        return PruneOutcome(kind=self.kind, head_scores=head_fisher, removed_heads=selection.heads, notes=[selection.summary(context.max_seq_len)])
