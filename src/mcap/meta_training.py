"""What the meta-controller stages learn from: each task's pooled train sentences as the unpruned model sees them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from safetensors.torch import load_file
from torch import nn

from mcap.attention_maps import extract_maps
from mcap.controller import TaskPool, build_pool
from mcap.patterns import PatternCNN
from mcap.probe import TaskProbe
from mcap.splits import read_split

PATTERN_CNN = Path("models/pattern_cnn/model.safetensors")  # written by the pattern_cnn stage
MAP_BATCH_SIZE = 32


def load_pattern_cnn(path: Path = PATTERN_CNN) -> PatternCNN:
    """The trained attention-pattern CNN, in eval mode."""
    cnn = PatternCNN()
    cnn.load_state_dict(load_file(str(path)))
    return cnn.eval()


def pooled_sentences(tasks: list[str], pool_examples: int | None) -> dict[str, pd.DataFrame]:
    """Per task, the first ``pool_examples`` sentences of its train split (None: all of them)."""
    return {task: read_split(Path("data/processed") / task, "train").head(pool_examples) for task in tasks}


def task_pools(model: nn.Module, tokenizer, cnn: PatternCNN, frames: Mapping[str, pd.DataFrame],
               map_length: int) -> dict[str, TaskPool]:
    """Per task, its sentences' representations and per-head pattern features in the unpruned ``model`` (the maps
    cut to ``map_length`` tokens) with their labels."""
    return {task: build_pool(model, cnn, extract_maps(model, tokenizer, list(frame["sentence"]), map_length,
                                                      MAP_BATCH_SIZE), frame["label"].to_numpy())
            for task, frame in frames.items()}


def unpruned_probes(pools: Mapping[str, TaskPool], tasks: list[str]) -> dict[str, TaskProbe]:
    """The task term's linear probes, fitted once on the unpruned model's sentence vectors of each of ``tasks``."""
    return {task: TaskProbe.fit(pools[task].representations.numpy(), pools[task].labels.numpy()) for task in tasks}
