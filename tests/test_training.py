"""Fine-tuning: it learns, it is deterministic, and unstructured sparsity survives it."""

import pytest
import torch

from conftest import make_sentences
from mcap.modeling import load_model, save_model
from mcap.training import TrainSettings, finetune_grid, zero_masks

SETTINGS = TrainSettings(epochs=6, batch_size=16, max_seq_len=32, weight_decay=0.01, warmup_ratio=0.1)


@pytest.fixture
def saved_tiny(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    save_model(model, tokenizer, tmp_path / "model", {"kind": "none"})
    return tmp_path / "model", tokenizer


def run(saved, learning_rates=(3e-3,), keep_zeros=False):
    model_dir, tokenizer = saved
    return finetune_grid(lambda: load_model(model_dir)[0], make_sentences(128, 1), make_sentences(32, 2), tokenizer,
                         SETTINGS, list(learning_rates), seed=11, select_metric="accuracy", keep_zeros=keep_zeros)


def test_fine_tuning_learns_a_learnable_task(saved_tiny):
    history = run(saved_tiny).histories[3e-3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.8


def test_same_seed_gives_identical_metrics(saved_tiny):
    assert run(saved_tiny).histories == run(saved_tiny).histories


def test_learning_rate_with_the_best_validation_score_is_kept(saved_tiny):
    result = run(saved_tiny, learning_rates=(1e-6, 3e-3))
    scores = {rate: history[-1]["val_accuracy"] for rate, history in result.histories.items()}
    assert result.learning_rate == max(scores, key=scores.get) == 3e-3


def test_zeroed_weights_stay_zero_during_fine_tuning(saved_tiny, tmp_path):
    model_dir, tokenizer = saved_tiny
    model, _, _ = load_model(model_dir)
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.weight[:, :10] = 0
    save_model(model, tokenizer, tmp_path / "sparse", {"kind": "unstructured"})
    result = run((tmp_path / "sparse", tokenizer), keep_zeros=True)
    weight = result.model.bert.encoder.layer[0].output.dense.weight
    assert torch.count_nonzero(weight[:, :10]) == 0
    assert len(zero_masks(result.model)) == 1
