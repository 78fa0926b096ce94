"""The linear-probe measure of head rankings (a development aid that needs no fine-tuning)."""

import numpy as np
import pytest
import torch

from conftest import PRUNE_SETTINGS, make_sentences
from mcap.controller import sentence_representations
from mcap.errors import McapError
from mcap.heads import prune_heads
from mcap.ranking import (
    ANY_RATIO,
    keep_mask,
    probe_data,
    probe_mcc,
    rank_points,
    ranking_scores,
    reference_agreement,
    sentence_vectors,
)
from mcap.strategies import PruneContext
from mcap.training import make_loader


def context(tiny_model) -> PruneContext:
    model, tokenizer = tiny_model
    return PruneContext(model=model, tokenizer=tokenizer, task="toy", train=make_sentences(48, seed=1), ratio=0.0,
                        seed=0, settings=PRUNE_SETTINGS, max_seq_len=32, batch_size=16)


def test_the_keep_mask_drops_the_lowest_scored_heads_globally():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.6], [0.2, 0.8, 0.05, 0.7]])
    assert keep_mask(scores, 0.25).tolist() == [[1, 0, 1, 1], [1, 1, 0, 1]]
    assert keep_mask(scores, 0.0).sum() == 8


def test_masked_vectors_are_those_of_the_model_with_the_heads_removed(tiny_model):
    model, tokenizer = tiny_model
    loader = make_loader(tokenizer, make_sentences(8, seed=3), 4, 32)
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    masked = sentence_vectors(model, loader, mask)
    prune_heads(model, {0: [1], 1: [0, 1]})
    with torch.inference_mode():
        removed = torch.cat([sentence_representations(model, batch["input_ids"], batch["attention_mask"])
                             for batch in loader]).numpy()
    assert masked.shape == (8, 32) and np.abs(masked - removed).max() < 1e-5


def test_the_probe_scores_separable_vectors_high_and_label_free_noise_near_zero():
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 2
    informative = rng.normal(size=(200, 8)) + 3 * labels[:, None]
    assert probe_mcc(informative, labels) > 0.95
    assert abs(probe_mcc(rng.normal(size=(200, 8)), labels)) < 0.3


def test_seeded_strategies_get_a_row_per_seed_and_deterministic_ones_a_single_row(tiny_model):
    toy = context(tiny_model)
    scores = ranking_scores(toy, ["none", "imp", "head_random", "head_entropy"], seeds=[3, 4], learned={})
    points = rank_points(toy, make_sentences(24, seed=2), scores, ratios=[0.25, 0.5], train_examples=32, first_seed=3)
    counts = points.groupby("strategy").size().to_dict()
    assert counts == {"none": 1, "head_random": 4, "head_entropy": 2}  # unstructured strategies are not head rankings
    assert set(points[points["strategy"] == "head_random"]["seed"]) == {3, 4}
    assert points["score"].between(-1, 1).all() and points["scores_ratio"].isna().all()  # none learned
    unpruned, pruned = points[points["strategy"] == "none"].iloc[0], points[points["strategy"] != "none"]
    assert unpruned["kl"] == 0.0 and unpruned["task_loss"] == 0.0  # the objective's terms vanish without pruning
    assert (pruned["kl"] > 0).all()  # every mask here removes heads: its distances move


def test_a_learned_ranking_is_scored_at_each_ratio_with_the_controller_trained_nearest_to_it(tiny_model):
    toy = context(tiny_model)
    order = torch.arange(8.0).reshape(2, 4)
    scores = {"mcap": {0.2: {3: order}, 0.5: {3: -order}}, "head_entropy": {ANY_RATIO: {3: order}}}
    points = rank_points(toy, make_sentences(24, seed=2), scores, ratios=[0.25, 0.5, 0.75], train_examples=32,
                         first_seed=3)
    learned = points[points["strategy"] == "mcap"]
    assert learned["scores_ratio"].tolist() == [0.2, 0.5, 0.5]
    assert points[points["strategy"] == "head_entropy"]["scores_ratio"].isna().all()


def test_the_probe_sees_no_train_sentence_of_the_controllers_pool(tiny_model):
    toy, validation = context(tiny_model), make_sentences(24, seed=2)
    toy.train = toy.train.assign(label=[0] * 40 + [1] * 8)  # marks the pooled sentences: label 0
    data = probe_data(toy, validation, train_examples=32, pooled=40)
    assert len(data.labels) == 8 + len(validation)  # only 8 train sentences follow the pool
    assert data.labels[:8].tolist() == [1] * 8 and data.labels[8:].tolist() == validation["label"].tolist()


def test_each_ranking_is_compared_with_head_gradients_at_the_first_seed():
    order = torch.arange(8.0).reshape(2, 4)
    scores = {"head_gradient": {ANY_RATIO: {3: order, 4: -order}}, "head_random": {ANY_RATIO: {3: order, 4: -order}},
              "head_sep": {ANY_RATIO: {3: -order}},
              "mcap": {0.5: {3: -order}, 0.2: {3: order.flip(1)}}}  # the lowest ratio trained is compared
    agreement = reference_agreement(scores, seed=3)
    assert agreement["head_random"] == pytest.approx(1.0) and agreement["head_sep"] == pytest.approx(-1.0)
    assert -1.0 < agreement["mcap"] < 1.0 and "head_gradient" not in agreement
    assert reference_agreement(scores, seed=4)["head_random"] == pytest.approx(1.0)  # both at seed 4
    assert reference_agreement({"head_sep": {ANY_RATIO: {3: order}}}, seed=3) == {}  # head_gradient did not run


def test_a_probe_with_too_few_sentences_of_a_class_after_the_pool_is_refused_naming_the_keys(tiny_model):
    toy = context(tiny_model)
    with pytest.raises(McapError, match=r"mcap.pool_examples.*ranking.train_examples"):
        probe_data(toy, make_sentences(4, seed=2), train_examples=32, pooled=48)  # 2 sentences of each class left
