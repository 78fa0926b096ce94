"""Shared fixtures: a tiny random BERT (2 layers x 4 heads) with its own vocabulary, and tiny GLUE-layout data."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from mcap.params import PruneSettings, TrainSettings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

POSITIVE = ["good", "great", "lovely", "fine", "superb", "charming", "moving", "brilliant"]
NEGATIVE = ["bad", "awful", "dull", "boring", "poor", "tedious", "messy", "weak"]
PRUNE_SETTINGS = PruneSettings(ratios=[0.5], seeds=[0], importance_examples=16, gradient_probe_steps=3,
                               gradient_probe_lr=1e-3, imp_rounds=2, imp_retrain_steps=2, imp_learning_rate=3e-5,
                               imp_rewind=True)
TRAIN_SETTINGS = TrainSettings(epochs=1, learning_rates=[1e-3], batch_size=8, max_seq_len=32, weight_decay=0.01,
                               warmup_ratio=0.1, select_metric="mcc")
FILLER = ["the", "film", "was", "a", "story", "and", "plot", "acting", "really", "quite", "very", "it", "is"]


def make_sentences(count: int, seed: int) -> pd.DataFrame:
    """Sentences whose label is carried by one sentiment word: learnable by a tiny model."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = index % 2
        words = rng.sample(FILLER, rng.randint(3, 8))
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        rows.append((" ".join(words), label))
    return pd.DataFrame(rows, columns=["sentence", "label"])


def save_tiny_bert(directory: Path, seed: int = 0) -> Path:
    """A random BertConfig(2 layers, 4 heads, hidden 32) model with non-zero biases + WordPiece tokenizer, saved."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "!", ".", ",", "<", "3", "#"] + sorted(set(POSITIVE + NEGATIVE + FILLER))
    tokenizer = BertTokenizerFast(vocab={token: index for index, token in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # BERT initialises biases to 0; real checkpoints have non-zero ones, and so must ours
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.2)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_tiny_glue(root: Path, rows: int = 80) -> Path:
    """SST-2 (header sentence<TAB>label, labelled test.tsv) and CoLA (4 columns, no header) folders."""
    sst2, cola = root / "SST-2", root / "CoLA"
    sst2.mkdir(parents=True)
    cola.mkdir(parents=True)
    for name, seed in (("train", 1), ("test", 2)):
        frame = make_sentences(rows, seed)
        (sst2 / f"{name}.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in frame.itertuples(index=False)))
    for name, seed in (("train", 3), ("dev", 4)):
        frame = make_sentences(rows, seed)
        (cola / f"{name}.tsv").write_text("".join(f"src\t{y}\t\t{s}\n" for s, y in frame.itertuples(index=False)))
    return root


def write_tiny_task(folder: Path, rows: int = 80) -> Path:
    """An extra task in SentEval layout: train.tsv and dev.tsv of label<TAB>sentence, no header."""
    folder.mkdir(parents=True)
    for name, seed in (("train", 5), ("dev", 6)):
        frame = make_sentences(rows, seed)
        (folder / f"{name}.tsv").write_text("".join(f"{y}\t{s}\n" for s, y in frame.itertuples(index=False)))
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def tiny_model_factory(tiny_model_dir):
    """A function returning a fresh copy of the tiny model and its tokenizer at each call."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    def load():
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
        return model, AutoTokenizer.from_pretrained(tiny_model_dir)

    return load


@pytest.fixture
def tiny_model(tiny_model_factory):
    return tiny_model_factory()


@pytest.fixture
def tiny_batch(tiny_model):
    _model, tokenizer = tiny_model
    sentences = list(make_sentences(6, seed=5)["sentence"])
    return tokenizer(sentences, padding=True, return_tensors="pt")  # padded: exercises the attention mask


def machine(cpu_model: str = "1") -> dict:
    """A fine-tuning's machine record as :func:`mcap.evaluate.machine_record` writes it (the keys the reports read)."""
    return {"cpu": {"model_name": "AMD EPYC", "family": "25", "model": cpu_model}, "device": "CPU AMD EPYC"}
