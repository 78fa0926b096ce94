"""``mcap_joint`` (not in the paper): remove the heads with the lowest δ that masks learned on the task loss of the
adapting model give the task (:mod:`mcap.joint_controller`); the pre-trained weights are pruned, not the adapted ones.

δ comes from the controller stage's ``mcap_joint`` controllers, the one whose seed is the pruning seed: a task's own
logits for a task it trained on, g(T, Φ) alone for a transfer task.
"""

from mcap.strategies.base import LearnedHeadStrategy, register


@register
class JointMaskHeads(LearnedHeadStrategy):
    name = "mcap_joint"
    label = "7d. Head masks learned during fine-tuning, weights restored (Li et al. 2021; not in paper)"
