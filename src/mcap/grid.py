"""Where each model of the experiment grid lives: one pruned model per (task, strategy, ratio, pruning seed), one
fine-tuned model per (task, strategy, ratio, pruning seed, fine-tuning seed), and one record of test metrics per
(task, strategy, ratio, fine-tuning seed) holding each of its pruning seeds.

A strategy that draws nothing from the pruning seed (``Strategy.seeded`` false: ``none``, ``head_entropy``, ...) is
pruned and fine-tuned at the first pruning seed only (:func:`mcap.strategies.base.pruning_seeds`): its other seeds
would repeat it bit for bit.
"""

from __future__ import annotations

from pathlib import Path

PRUNED, FINETUNED, CELLS = Path("models/pruned"), Path("models/finetuned"), Path("reports/cells")


def model_name(strategy: str, ratio: float) -> str:
    """``<strategy>-<ratio>``, as the stage names of dvc.yaml write it (``finetune@sst2-head_random-0.5-42``)."""
    return f"{strategy}-{ratio}"


def pruned_subdir(strategy: str, ratio: float, pruning_seed: int) -> Path:
    """A pruned model's folder within its task's (the prune stage writes a task's models together)."""
    return Path(model_name(strategy, ratio)) / f"seed-{pruning_seed}"


def pruned_dir(task: str, strategy: str, ratio: float, pruning_seed: int) -> Path:
    return PRUNED / task / pruned_subdir(strategy, ratio, pruning_seed)


def finetuned_seed_dir(task: str, strategy: str, ratio: float, finetune_seed: int) -> Path:
    """The fine-tuned models of one finetune stage: one folder per pruning seed (:func:`finetuned_dir`)."""
    return FINETUNED / task / model_name(strategy, ratio) / f"seed-{finetune_seed}"


def finetuned_dir(task: str, strategy: str, ratio: float, finetune_seed: int, pruning_seed: int) -> Path:
    return finetuned_seed_dir(task, strategy, ratio, finetune_seed) / f"pruning-seed-{pruning_seed}"


def cell_path(task: str, strategy: str, ratio: float, finetune_seed: int) -> Path:
    """The finetune stage's record of one (task, strategy, ratio, fine-tuning seed): test metrics per pruning seed."""
    return CELLS / task / model_name(strategy, ratio) / f"seed-{finetune_seed}.json"

