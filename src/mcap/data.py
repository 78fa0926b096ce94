"""Reading the task data and splitting it (paper §II.E, §III.A).

Every task is single-sentence binary classification. The original train file is split 9:1
(stratified, seeded) into train/validation; the test split is SST-2's labelled ``test.tsv``
(1,821) and CoLA's ``dev.tsv`` (1,043, GLUE's test labels are private). A folder with
``train.tsv`` and ``dev.tsv`` of ``label<TAB>sentence`` rows is a task too (``data.extra_tasks``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from mcap.errors import McapError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
COLUMNS = ["sentence", "label"]


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's raw files are and how to read them."""

    name: str
    folder: Path
    layout: str  # key of READERS
    test_file: str
    hub_config: str | None = None  # GLUE config for the `datasets` fallback


def _row(path: Path, line_number: int, sentence: str, label: str) -> tuple[str, int]:
    sentence = sentence.strip()
    if not sentence:
        raise McapError(f"{path}:{line_number}: empty sentence")
    if label not in ("0", "1"):
        raise McapError(f"{path}:{line_number}: label {label!r} is not 0 or 1")
    return sentence, int(label)


def _fields(path: Path, line_number: int, line: str, count: int) -> list[str]:
    fields = line.split("\t")
    if len(fields) != count:
        raise McapError(f"{path}:{line_number}: expected {count} tab-separated columns, found {len(fields)}")
    return fields


def _read_sentence_label(path: Path, lines: list[str]) -> list[tuple[str, int]]:
    """SST-2: header ``sentence<TAB>label``."""
    if not lines or lines[0].split("\t") != ["sentence", "label"]:
        raise McapError(f"{path}:1: expected the header 'sentence<TAB>label'")
    return [_row(path, n, *_fields(path, n, line, 2)) for n, line in enumerate(lines[1:], start=2)]


def _read_cola(path: Path, lines: list[str]) -> list[tuple[str, int]]:
    """CoLA: no header; ``source<TAB>label<TAB>mark<TAB>sentence``."""
    rows = []
    for n, line in enumerate(lines, start=1):
        _source, label, _mark, sentence = _fields(path, n, line, 4)
        rows.append(_row(path, n, sentence, label))
    return rows


def _read_label_sentence(path: Path, lines: list[str]) -> list[tuple[str, int]]:
    """SentEval-style extra tasks: no header; ``label<TAB>sentence``."""
    rows = []
    for n, line in enumerate(lines, start=1):
        label, sentence = _fields(path, n, line, 2)
        rows.append(_row(path, n, sentence, label))
    return rows


READERS: dict[str, Callable[[Path, list[str]], list[tuple[str, int]]]] = {
    "sentence_label": _read_sentence_label,
    "cola": _read_cola,
    "label_sentence": _read_label_sentence,
}


def task_specs(glue_dir: str | Path, extra_tasks: Mapping[str, str] | None = None) -> dict[str, TaskSpec]:
    """The built-in GLUE tasks plus ``data.extra_tasks`` ({name: folder})."""
    glue_dir = Path(glue_dir)
    specs = {
        "sst2": TaskSpec("sst2", glue_dir / "SST-2", "sentence_label", "test.tsv", hub_config="sst2"),
        "cola": TaskSpec("cola", glue_dir / "CoLA", "cola", "dev.tsv", hub_config="cola"),
    }
    for name, folder in (extra_tasks or {}).items():
        if name in specs:
            raise McapError(f"params.yaml: data.extra_tasks.{name} clashes with the built-in task {name!r}")
        specs[name] = TaskSpec(name, Path(folder), "label_sentence", "dev.tsv")
    return specs


def resolve_tasks(names: list[str], specs: Mapping[str, TaskSpec]) -> list[TaskSpec]:
    unknown = [name for name in names if name not in specs]
    if unknown:
        raise McapError(
            f"params.yaml: tasks lists unknown {unknown}; known: {sorted(specs)} "
            "(add a folder of train.tsv/dev.tsv under data.extra_tasks for a new one)"
        )
    return [specs[name] for name in names]


def read_tsv(path: Path, layout: str) -> pd.DataFrame:
    """Read and validate one raw file into a (sentence, label) frame."""
    if not path.is_file():
        raise McapError(f"{path}: file not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = READERS[layout](path, [line for line in lines if line.strip()])
    if not rows:
        raise McapError(f"{path}: no examples")
    return pd.DataFrame(rows, columns=COLUMNS)


def load_raw(spec: TaskSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(original train, test) for a task: from its local folder, else from the hub when reachable."""
    if spec.folder.is_dir():
        return read_tsv(spec.folder / "train.tsv", spec.layout), read_tsv(spec.folder / spec.test_file, spec.layout)
    if spec.hub_config is None:
        raise McapError(f"task {spec.name}: folder {spec.folder} not found (expected train.tsv and dev.tsv)")
    return _load_from_hub(spec)


def _load_from_hub(spec: TaskSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    # The hub's GLUE test labels are hidden (-1), so its labelled validation split is the test set.
    log.info("%s not found; trying the Hugging Face hub (glue/%s)", spec.folder, spec.hub_config)
    try:
        from datasets import load_dataset

        glue = load_dataset("glue", spec.hub_config)
    except Exception as error:  # any failure here means "offline or not available"
        raise McapError(
            f"data.glue_dir: {spec.folder} not found and the hub copy of glue/{spec.hub_config} is unreachable "
            f"({type(error).__name__}); point data.glue_dir at a folder with SST-2/ and CoLA/ in GLUE layout"
        ) from error
    frames = [glue[split].to_pandas()[COLUMNS] for split in ("train", "validation")]
    return frames[0], frames[1]


def stratified_subset(frame: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    """A seeded, label-stratified subset of ``size`` rows (all rows when size is None or larger)."""
    if size is None or size >= len(frame):
        return frame.reset_index(drop=True)
    subset, _ = train_test_split(frame, train_size=size, stratify=frame["label"], random_state=seed)
    return subset.reset_index(drop=True)


def split_task(
    train: pd.DataFrame,
    test: pd.DataFrame,
    validation_fraction: float,
    seed: int,
    max_train: int | None,
    max_eval: int | None,
) -> dict[str, pd.DataFrame]:
    """Split the original train 9:1 into train/validation, then apply the optional caps."""
    train_part, validation_part = train_test_split(
        train, test_size=validation_fraction, stratify=train["label"], random_state=seed
    )
    return {
        "train": stratified_subset(train_part, max_train, seed),
        "validation": stratified_subset(validation_part, max_eval, seed),
        "test": stratified_subset(test, max_eval, seed),
    }


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
