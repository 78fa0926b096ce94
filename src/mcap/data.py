"""Reading the task data and splitting it (paper §II.E, §III.A).

Every task is single-sentence binary classification. The original train file is split 9:1
(stratified, seeded) into train/validation; the test split is SST-2's labelled ``test.tsv``
(1,821) and CoLA's ``dev.tsv`` (1,043, GLUE's test labels are private). A folder with
``train.tsv`` and ``dev.tsv`` of ``label<TAB>sentence`` rows is a task too (``data.extra_tasks``).

SST-2's train file is phrase-level: most of its rows are phrases cut from its other rows. A random
9:1 split (``data.split: random``, the paper's) therefore validates on phrases of the very sentences
it trains on. The ``grouped`` split (the default) assigns each phrase to its *root*, the longest
train phrase that contains it word for word (a root contains itself), and splits the roots 9:1, so
that every phrase goes where its root goes. For tasks of whole sentences the roots are the sentences.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from mcap.errors import McapError
from mcap.params import SPLIT_METHODS

log = logging.getLogger(__name__)

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


# Word n-grams are compared by a polynomial hash modulo a Mersenne prime (collisions ~ n² / 2^61).
_HASH_MODULUS = (1 << 61) - 1
_HASH_BASE = 1_000_003


def _word_ids(sentences: Sequence[str]) -> list[list[int]]:
    vocabulary: dict[str, int] = {}
    return [[vocabulary.setdefault(word, len(vocabulary) + 1) for word in sentence.split()] for sentence in sentences]


def _hash(ids: Sequence[int]) -> int:
    value = 0
    for token in ids:
        value = (value * _HASH_BASE + token) % _HASH_MODULUS
    return value


def _ngram_hashes(ids: Sequence[int]) -> Iterator[int]:
    """The hash of every contiguous word n-gram of ``ids``, each in O(1) from the one before."""
    for start in range(len(ids)):
        value = 0
        for token in ids[start:]:
            value = (value * _HASH_BASE + token) % _HASH_MODULUS
            yield value


def _roots_of(ids: list[list[int]]) -> tuple[np.ndarray, dict[int, int]]:
    """Roots (see :func:`phrase_roots`) and the hash of every n-gram of a root -> that root's index."""
    owner: dict[int, int] = {}
    roots = np.empty(len(ids), dtype=np.int64)
    for index in sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i)):  # longest first: roots come first
        root = owner.get(_hash(ids[index]))
        if root is None:  # inside no longer phrase: a root of its own
            root = index
            for value in _ngram_hashes(ids[index]):
                owner.setdefault(value, index)
        roots[index] = root
    return roots, owner


def phrase_roots(sentences: Sequence[str]) -> np.ndarray:
    """For each phrase, the index of its root: the longest phrase of ``sentences`` that contains it as a
    contiguous run of words (ties: the first in order; a phrase inside no other is its own root)."""
    return _roots_of(_word_ids(sentences))[0]


def contained_fraction(phrases: Sequence[str], corpus: Sequence[str]) -> float:
    """Fraction of ``phrases`` that occur, word for word, inside some phrase of ``corpus``."""
    ids = _word_ids(list(corpus) + list(phrases))
    _roots, owner = _roots_of(ids[:len(corpus)])
    return float(np.mean([_hash(phrase) in owner for phrase in ids[len(corpus):]])) if len(phrases) else 0.0


def validation_split(train: pd.DataFrame, validation_fraction: float, seed: int,
                     method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train part, validation part) of the original train file, both shuffled, stratified by label.

    ``random``: rows split 9:1. ``grouped``: roots split 9:1 (stratified by the root's label), each
    phrase following its root (see the module docstring).
    """
    if method == "random":
        return tuple(train_test_split(train, test_size=validation_fraction, stratify=train["label"], random_state=seed))
    if method != "grouped":
        raise McapError(f"params.yaml: 'data.split' must be one of {', '.join(SPLIT_METHODS)}, got {method!r}")
    roots = phrase_roots(list(train["sentence"]))
    unique_roots = np.unique(roots)
    _train_roots, validation_roots = train_test_split(unique_roots, test_size=validation_fraction,
                                                      stratify=train["label"].to_numpy()[unique_roots], random_state=seed)
    in_validation = np.isin(roots, validation_roots)
    return tuple(part.sample(frac=1.0, random_state=seed) for part in (train[~in_validation], train[in_validation]))


def split_task(
    train: pd.DataFrame,
    test: pd.DataFrame,
    validation_fraction: float,
    seed: int,
    max_train: int | None,
    max_validation: int | None,
    max_test: int | None = None,
    method: str = "grouped",
) -> dict[str, pd.DataFrame]:
    """Split the original train 9:1 into train/validation (:func:`validation_split`), then apply the optional caps."""
    train_part, validation_part = validation_split(train, validation_fraction, seed, method)
    return {
        "train": stratified_subset(train_part, max_train, seed),
        "validation": stratified_subset(validation_part, max_validation, seed),
        "test": stratified_subset(test, max_test, seed),
    }


def validation_leakage(train: pd.DataFrame, validation_fraction: float, seed: int) -> dict[str, float]:
    """For each split method, the fraction of validation phrases that occur inside some train phrase."""
    leakage = {}
    for method in SPLIT_METHODS:
        train_part, validation_part = validation_split(train, validation_fraction, seed, method)
        leakage[method] = contained_fraction(list(validation_part["sentence"]), list(train_part["sentence"]))
    return leakage
