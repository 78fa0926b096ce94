"""MCAP: the RDD/KL objective, the controller's budget and gradients, the pattern CNN."""

import numpy as np
import pytest
import torch

from conftest import make_sentences
from mcap.attention_maps import extract_maps
from mcap.controller import (
    ControllerSettings,
    build_pool,
    episode_losses,
    head_importance,
    rdd_kl,
    relative_distance_distribution,
    sentence_representations,
    train_controller,
)
from mcap.heads import masked_heads
from mcap.patterns import PATTERNS, CnnTraining, PatternCNN, fit_pattern_cnn, synthetic_maps

SIZE = 16


def settings(**overrides) -> ControllerSettings:
    values = {"k": 12, "episodes": 16, "update_every": 2, "learning_rate": 0.05, "cnn_weight": 0.1, "budget_weight": 10.0,
                  "gumbel_tau": 1.0, "cnn_instances": 4, "ratio": 0.5, "seed": 0}
    return ControllerSettings(**{**values, **overrides})


@pytest.fixture
def pools(tiny_model):
    model, tokenizer = tiny_model
    torch.manual_seed(0)
    cnn = PatternCNN().eval()
    return {task: build_pool(model, cnn, extract_maps(model, tokenizer, list(make_sentences(24, seed)["sentence"]), SIZE, 8))
            for task, seed in (("a", 1), ("b", 2), ("unseen", 3))}, cnn


def test_relative_distance_rows_are_distributions():
    rows = relative_distance_distribution(torch.randn(5, 7))
    assert rows.shape == (5, 4)
    assert torch.allclose(rows.sum(dim=-1), torch.ones(5))


def test_kl_is_zero_without_masking_and_positive_with_a_masked_head(tiny_model, tiny_batch):
    model, _ = tiny_model
    ids, mask = tiny_batch["input_ids"], tiny_batch["attention_mask"]
    with torch.no_grad():
        original = sentence_representations(model, ids, mask)
        with masked_heads(model, torch.ones(2, 4)):
            unmasked = sentence_representations(model, ids, mask)
        head_off = torch.ones(2, 4)
        head_off[0, 1] = 0
        with masked_heads(model, head_off):
            pruned = sentence_representations(model, ids, mask)
    assert rdd_kl(original, unmasked).item() == pytest.approx(0.0, abs=1e-7)
    assert rdd_kl(original, pruned).item() > 1e-6


def test_gradients_reach_the_controller_parameters(tiny_model, pools):
    model, _ = tiny_model
    task_pools, cnn = pools
    controller, _ = train_controller(model, cnn, task_pools, ["a"], settings(episodes=1, update_every=2))
    losses = episode_losses(model, cnn, controller, task_pools["a"], np.arange(12), settings())
    losses["total"].backward()
    grads = {name: p.grad for name, p in controller.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert grads["task_projection.weight"].abs().sum() > 0 and grads["feature_projection.weight"].abs().sum() > 0


def test_budget_term_holds_the_kept_fraction_within_one_head(tiny_model, pools):
    model, _ = tiny_model
    task_pools, cnn = pools
    for ratio in (0.25, 0.5):
        controller, history = train_controller(model, cnn, task_pools, ["a", "b"], settings(ratio=ratio, episodes=24))
        for task in ("a", "b", "unseen"):
            kept_heads = head_importance(controller, task_pools[task]).mean().item() * 8
            assert abs(kept_heads - (1 - ratio) * 8) <= 1.0
        assert set(history[0]) == {"total", "kl", "vertical", "budget", "kept_fraction"}


def test_same_seed_gives_the_same_importance(tiny_model, pools):
    model, _ = tiny_model
    task_pools, cnn = pools
    deltas = [head_importance(train_controller(model, cnn, task_pools, ["a", "b"], settings())[0], task_pools["unseen"])
              for _ in range(2)]
    assert torch.equal(deltas[0], deltas[1])


def test_synthetic_maps_are_row_stochastic_and_balanced():
    maps, labels = synthetic_maps(50, SIZE, seed=0)
    rows = maps.sum(axis=2)  # (N, S): 1 for real rows, 0 for padding
    assert np.all((np.abs(rows - 1) < 1e-4) | (rows == 0))
    assert np.bincount(labels).tolist() == [10] * len(PATTERNS)
    assert maps.shape == (50, SIZE, SIZE) and maps.min() >= 0


def test_the_cnn_separates_the_synthetic_patterns():
    maps, labels = synthetic_maps(300, SIZE, seed=1)
    _model, report = fit_pattern_cnn(maps, labels, CnnTraining(epochs=12, batch_size=32, learning_rate=3e-3, seed=0))
    assert report["heldout_accuracy"] > 0.8  # chance is 0.2
    assert report["heldout_maps"] == 60
