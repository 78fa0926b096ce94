"""The processed splits on disk (``data/processed/<task>/<split>.tsv``): written by the split stage, read by
every stage after it. Kept apart from the reading and splitting of the raw data (``mcap.data``), so that the
stages that only read splits neither depend on nor import that code."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from mcap.errors import McapError


def write_splits(splits: Mapping[str, pd.DataFrame], out_dir: Path) -> dict[str, dict[str, int]]:
    """Write ``<split>.tsv`` files and ``stats.json``; return the stats (rows and label counts)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = {}
    for name, frame in splits.items():
        frame.to_csv(out_dir / f"{name}.tsv", sep="\t", index=False)
        counts = frame["label"].value_counts().sort_index()
        stats[name] = {"rows": len(frame), **{f"label_{label}": int(n) for label, n in counts.items()}}
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def read_split(task_dir: Path, split: str) -> pd.DataFrame:
    """Read a processed split written by :func:`write_splits`."""
    path = Path(task_dir) / f"{split}.tsv"
    if not path.is_file():
        raise McapError(f"{path}: missing; run the split stage first (dvc repro split)")
    # na_filter=False: sentences such as "null" or "NA" must stay strings
    return pd.read_csv(path, sep="\t", na_filter=False, dtype={"sentence": str, "label": int})


POOL_DIR = Path("data/meta_pool")  # written by the meta_pool stage: <task>.tsv per task of `tasks`


def pooled_sentences(tasks: list[str], pool_examples: int | None) -> dict[str, pd.DataFrame]:
    """Per task, the first ``pool_examples`` sentences of its train split: what the meta-controllers learn from and
    score a task on (None: all of them)."""
    return {task: read_split(Path("data/processed") / task, "train").head(pool_examples) for task in tasks}


def read_pools(tasks: list[str]) -> dict[str, pd.DataFrame]:
    """Per task, the pooled sentences as the meta_pool stage kept them (:func:`pooled_sentences`)."""
    return {task: read_split(POOL_DIR, task) for task in tasks}
