"""``mcap_iterative``: MCAP pruned in steps, the controller re-fitted on the surviving heads after each step.

Not in the paper: an extension of ``mcap`` (see docs/method.md). The ``meta_controller_iterative``
stage removes ``mcap.iterative_step`` of the heads at a time up to ``prune.ratio``, re-fitting the
controller (and the task probe) on the heads that survive; its scores order the heads by removal,
so the lowest ``floor(ratio × heads)`` are the heads it removed.
"""

from pathlib import Path

from mcap.strategies.base import register
from mcap.strategies.mcap import MetaControllerHeads


@register
class IterativeMetaControllerHeads(MetaControllerHeads):
    name = "mcap_iterative"
    stage = "meta_controller_iterative"
    delta_dir = Path("reports/mcap_iterative/delta")
    controller_dir = Path("models/meta_controller_iterative")
    report_dir = Path("reports/mcap_iterative/controller")
