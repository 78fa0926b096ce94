"""``mcap_iterative``: MCAP pruned in steps, the controller re-fitted on the surviving heads after each step.

Not in the paper: an extension of ``mcap`` (see docs/method.md). Its ``controller`` stage
removes ``mcap.iterative_step`` of the heads at a time up to a ratio of ``prune.ratios``, re-fitting the
controller (and the task probe) on the heads that survive; its scores order the heads by removal,
so the lowest ``floor(ratio × heads)`` are the heads it removed.
"""

from mcap.strategies.base import LearnedHeadStrategy, register


@register
class IterativeMetaControllerHeads(LearnedHeadStrategy):
    name = "mcap_iterative"
    label = "7b. MCAP, iterative (not in paper)"
