"""``mcap``: remove the heads with the lowest meta-controller importance δ for the task (paper Eq. 1, 6).

δ comes from the ``meta_controller`` stage (``reports/mcap/delta/<task>.json``), from the controller
trained with the pruning seed ``seed``. That controller may never have trained on this task: that
is the paper's transfer claim.
"""

import json
from pathlib import Path
from typing import ClassVar

import torch

from mcap.errors import McapError
from mcap.strategies.base import HeadStrategy, PruneContext, register


@register
class MetaControllerHeads(HeadStrategy):
    name = "mcap"
    stage: ClassVar[str] = "meta_controller"  # the stage that writes the scores
    delta_dir: ClassVar[Path] = Path("reports/mcap/delta")
    controller_dir: ClassVar[Path] = Path("models/meta_controller")
    report_dir: ClassVar[Path] = Path("reports/mcap/controller")

    def score_heads(self, context: PruneContext) -> torch.Tensor:
        path = self.delta_dir / f"{context.task}.json"
        if not path.is_file():
            raise McapError(f"{path}: missing; the {self.stage} stage writes scores for every task in 'tasks' and 'transfer.tasks'")
        by_seed = json.loads(path.read_text())["delta_by_seed"]
        if str(context.seed) not in by_seed:
            raise McapError(f"params.yaml: 'seed' {context.seed} has no meta-controller; add it to 'mcap.seeds' "
                            f"(controllers trained: {', '.join(by_seed)})")
        return torch.tensor(by_seed[str(context.seed)])
