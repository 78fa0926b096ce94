"""Reading, validating and splitting task data; the split stage's behaviour on bad input."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import write_tiny_glue
from mcap.data import (
    contained_fraction,
    phrase_roots,
    read_tsv,
    split_task,
    stratified_subset,
    task_specs,
)
from mcap.errors import McapError
from mcap.splits import read_split, write_splits

ROOT = Path(__file__).resolve().parents[1]


def test_glue_layouts_are_read(tmp_path):
    glue = write_tiny_glue(tmp_path / "glue", rows=10)
    specs = task_specs(glue)
    sst2 = read_tsv(glue / "SST-2" / "train.tsv", specs["sst2"].layout)
    cola = read_tsv(glue / "CoLA" / "dev.tsv", specs["cola"].layout)
    assert list(sst2.columns) == ["sentence", "label"] and len(sst2) == len(cola) == 10
    assert set(sst2["label"]) == {0, 1}


def test_extra_task_folder_is_a_task(tmp_path):
    (tmp_path / "subj").mkdir()
    (tmp_path / "subj" / "train.tsv").write_text("1\ta subjective line\n0\tan objective line\n")
    spec = task_specs("glue", {"subj": str(tmp_path / "subj")})["subj"]
    frame = read_tsv(spec.folder / "train.tsv", spec.layout)
    assert frame.values.tolist() == [["a subjective line", 1], ["an objective line", 0]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("sentence\tlabel\ngood film\t2\n", "train.tsv:2: label '2' is not 0 or 1"),
        ("sentence\tlabel\n \t1\n", "train.tsv:2: empty sentence"),
        ("sentence\tlabel\ngood\t1\textra\n", "train.tsv:2: expected 2 tab-separated columns, found 3"),
        ("text\tlabel\ngood\t1\n", "train.tsv:1: expected the header"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "train.tsv"
    path.write_text(content)
    with pytest.raises(McapError, match=message.replace("[", "\\[")):
        read_tsv(path, "sentence_label")


def test_split_is_stratified_seeded_and_capped():
    frame = pd.DataFrame({"sentence": [f"s{i}" for i in range(200)], "label": [i % 4 == 0 for i in range(200)]}).astype({"label": int})
    first = split_task(frame, frame, 0.1, seed=7, max_train=100, max_validation=None)
    again = split_task(frame, frame, 0.1, seed=7, max_train=100, max_validation=None)
    assert [len(first[s]) for s in ("train", "validation", "test")] == [100, 20, 200]
    assert first["validation"]["label"].mean() == pytest.approx(0.25)
    assert first["train"]["label"].mean() == pytest.approx(0.25)
    assert all(first[s].equals(again[s]) for s in first)
    assert not set(first["train"]["sentence"]) & set(first["validation"]["sentence"])
    assert len(stratified_subset(frame, None, 0)) == 200


def test_each_split_has_its_own_cap():
    frame = pd.DataFrame({"sentence": [f"s{i}" for i in range(200)], "label": [i % 2 for i in range(200)]})
    for method in ("grouped", "random"):
        split = split_task(frame, frame, 0.2, seed=1, max_train=50, max_validation=10, max_test=30, method=method)
        assert [len(split[s]) for s in ("train", "validation", "test")] == [50, 10, 30]
        every_test = split_task(frame, frame, 0.2, seed=1, max_train=50, max_validation=10, method=method)
        assert len(every_test["test"]) == 200


def test_a_phrase_belongs_to_the_longest_phrase_that_contains_it_word_for_word():
    phrases = ["a b c d", "b c", "c d e", "x y", "c", "b c d e f", "bc"]
    assert phrase_roots(phrases).tolist() == [0, 5, 5, 3, 5, 5, 6]  # "b c" is in both; "b c d e f" is longer
    assert contained_fraction(["b c", "c d", "d c", "y"], ["a b c d", "x y"]) == pytest.approx(0.75)


def phrase_level_task(sentences: int = 60) -> pd.DataFrame:
    """SST-2-like rows: every sentence and, as rows of their own, phrases cut from it."""
    rows = []
    for index in range(sentences):
        words = [f"w{index}_{position}" for position in range(6)]
        rows += [(" ".join(words), index % 2), (" ".join(words[1:4]), index % 2), (words[2], index % 2)]
    return pd.DataFrame(rows, columns=["sentence", "label"])


def test_the_grouped_split_keeps_every_phrase_with_its_sentence():
    frame = phrase_level_task()
    grouped = split_task(frame, frame, 0.2, seed=3, max_train=None, max_validation=None, method="grouped")
    random = split_task(frame, frame, 0.2, seed=3, max_train=None, max_validation=None, method="random")
    assert len(grouped["validation"]) == 36 and len(grouped["train"]) == 144  # 12 of 60 sentences, 3 rows each
    assert contained_fraction(list(grouped["validation"]["sentence"]), list(grouped["train"]["sentence"])) == 0
    assert contained_fraction(list(random["validation"]["sentence"]), list(random["train"]["sentence"])) > 0.5
    assert grouped["validation"]["label"].mean() == pytest.approx(0.5)


def test_an_unknown_split_method_is_refused():
    frame = phrase_level_task()
    with pytest.raises(McapError, match="'data.split' must be one of grouped, random, got 'phrase'"):
        split_task(frame, frame, 0.2, seed=3, max_train=None, max_validation=None, method="phrase")


SST2 = ROOT.parent / "shared" / "data" / "glue" / "SST-2"


@pytest.mark.skipif(not SST2.is_dir(), reason="the real SST-2 files are not beside the repository")
def test_sst2_test_sentences_barely_occur_in_train():
    train, test = (read_tsv(SST2 / name, "sentence_label") for name in ("train.tsv", "test.tsv"))
    overlap = set(test["sentence"].str.strip()) & set(train["sentence"].str.strip())
    assert len(overlap) <= 5  # 2 of 1,821 when checked; a leak from train into test would show here


def test_processed_splits_round_trip_awkward_sentences(tmp_path):
    frame = pd.DataFrame({"sentence": ['he said "no"', "NA", "null", "tab-free , commas"], "label": [0, 1, 0, 1]})
    write_splits({"train": frame}, tmp_path)
    assert read_split(tmp_path, "train").equals(frame)


def run_split_stage(workdir: Path, glue_dir: Path, **data) -> subprocess.CompletedProcess:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update({"glue_dir": str(glue_dir), "extra_tasks": {}, "task_train_examples": {}, **data})
    params["tasks"] = ["sst2", "cola"]
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run([sys.executable, str(ROOT / "stages" / "split.py")], cwd=workdir, capture_output=True, text=True, check=False)


def test_split_stage_writes_processed_data(tmp_path):
    result = run_split_stage(tmp_path, write_tiny_glue(tmp_path / "glue", rows=60))
    assert result.returncode == 0, result.stderr
    assert read_split(tmp_path / "data/processed/cola", "test").shape == (60, 2)
    leakage = yaml.safe_load((tmp_path / "reports/split/leakage.json").read_text())
    assert set(leakage["sst2"]["validation_inside_train"]) == {"grouped", "random"}


def test_a_task_may_have_its_own_training_size(tmp_path):
    """CoLA may need its whole train split where SST-2 learns from a subsample (data.task_train_examples)."""
    glue = write_tiny_glue(tmp_path / "glue", rows=60)
    result = run_split_stage(tmp_path, glue, max_train_examples=20, task_train_examples={"cola": None})
    assert result.returncode == 0, result.stderr
    assert len(read_split(tmp_path / "data/processed/sst2", "train")) == 20
    assert len(read_split(tmp_path / "data/processed/cola", "train")) > 40  # all of its 90% share of 60
    (tmp_path / "other").mkdir()
    result = run_split_stage(tmp_path / "other", glue, task_train_examples={"mnli": 10})
    assert result.returncode == 2 and "'data.task_train_examples' names ['mnli']" in result.stderr


def test_split_stage_fails_cleanly_and_writes_nothing_on_bad_input(tmp_path):
    glue = write_tiny_glue(tmp_path / "glue", rows=60)
    with open(glue / "CoLA" / "train.tsv", "a") as handle:
        handle.write("src\tyes\t\tA sentence with a bad label.\n")
    result = run_split_stage(tmp_path, glue)
    assert result.returncode == 2
    assert "error:" in result.stderr and "CoLA/train.tsv:61: label 'yes' is not 0 or 1" in result.stderr
    assert not (tmp_path / "data").exists()
