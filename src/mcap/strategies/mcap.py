"""``mcap``: remove the heads with the lowest meta-controller importance δ for the task (paper Eq. 1, 6).

δ comes from the ``meta_controller`` stage (``reports/mcap/delta/<task>.json``), from the controller
trained with the pruning seed ``seed``. That controller may never have trained on this task: that
is the paper's transfer claim.
"""

from mcap.strategies.base import LearnedHeadStrategy, register


@register
class MetaControllerHeads(LearnedHeadStrategy):
    name = "mcap"
    label = "7. MCAP"
