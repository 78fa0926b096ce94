"""``imp``: iterative magnitude pruning (paper §III.B.1).

``prune.imp_rounds`` rounds of global magnitude pruning of the encoder Linear weights, each
removing the same fraction of what is left so that the last round reaches a ratio of ``prune.ratios``,
with ``prune.imp_retrain_steps`` steps of retraining on the task's train split between
rounds. With ``prune.imp_rewind`` the surviving weights are then rewound to their
pre-trained values (the lottery-ticket recipe for BERT, Chen et al. 2020), so that like every
other strategy it is pruned *before* fine-tuning and fine-tuning starts from pre-trained weights.
"""

import copy

import torch
from torch.nn.utils import prune

from mcap.modeling import encoder_linears
from mcap.strategies.base import PruneContext, PruneOutcome, Strategy, encoder_weight_sparsity, register, short_training


@register
class IterativeMagnitude(Strategy):
    name = "imp"
    label = "1. Iterative magnitude pruning"
    kind = "unstructured"

    def apply(self, context: PruneContext) -> PruneOutcome:
        model = context.model
        rounds = context.settings.imp_rounds
        pretrained = copy.deepcopy(model.state_dict())
        targets = [(linear, "weight") for _name, linear in encoder_linears(model)]
        per_round = 1 - (1 - context.ratio) ** (1 / rounds)  # of the weights still unpruned
        for round_index in range(rounds):
            prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=per_round)
            if round_index < rounds - 1:
                short_training(context, context.settings.imp_retrain_steps,
                               context.settings.imp_learning_rate, list(model.parameters()))
        for module, name in targets:
            prune.remove(module, name)
        if context.settings.imp_rewind:
            keep = {id(module): module.weight.detach() != 0 for module, _ in targets}
            model.load_state_dict(pretrained)
            with torch.no_grad():
                for module, _ in targets:
                    module.weight.mul_(keep[id(module)])
        return PruneOutcome(kind=self.kind, weight_sparsity=encoder_weight_sparsity(model))
