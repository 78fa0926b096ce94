"""MCAP: the RDD/KL objective, the exact-budget masks, what the controller learns, the pattern CNN."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from conftest import make_sentences
from mcap.attention_maps import extract_maps
from mcap.controller import (
    ControllerSettings,
    build_pool,
    controller_diagnostics,
    episode_losses,
    episode_schedule,
    exact_budget_mask,
    iterative_diagnostics,
    new_controller,
    rdd_kl,
    relative_distance_distribution,
    removal_scores,
    sentence_representations,
    step_ratios,
    train_controller,
    train_iterative,
    unpruned_states,
)
from mcap.heads import attention_blocks, head_size, masked_heads
from mcap.patterns import PATTERNS, CnnTraining, PatternCNN, fit_pattern_cnn, synthetic_maps
from mcap.probe import TaskProbe, linear_probe

SIZE = 16


def settings(**overrides) -> ControllerSettings:
    values = {"k": 12, "passes": 1, "update_every": 1, "learning_rate": 0.05, "conditional_learning_rate": 0.005,
              "task_weight": 1.0, "cnn_weight": 0.1, "noise_start": 1.0, "noise_end": 0.1, "cnn_instances": 4,
              "ratio": 0.5, "seed": 0}
    return ControllerSettings(**{**values, **overrides})


def make_pools(model, tokenizer, tasks=(("a", 1), ("b", 2), ("unseen", 3)), count=24):
    torch.manual_seed(0)
    cnn = PatternCNN().eval()
    pools = {}
    for task, seed in tasks:
        frame = make_sentences(count, seed)
        pools[task] = build_pool(model, cnn, extract_maps(model, tokenizer, list(frame["sentence"]), SIZE, 8),
                                 frame["label"].to_numpy())
    return pools, cnn


def fitted_probes(pools):
    return {task: TaskProbe.fit(pool.representations, pool.labels) for task, pool in pools.items()}


def unpruned(pools, task_weight=1.0):
    return unpruned_states(pools, fitted_probes(pools), task_weight)


ALL_HEADS = torch.ones(3, 5, dtype=torch.bool)


@pytest.fixture
def pools(tiny_model):
    return make_pools(*tiny_model)


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
    states = unpruned(task_pools)
    controller, _ = train_controller(model, cnn, task_pools, states, ["a"], settings())  # the output layer starts at 0
    losses = episode_losses(model, cnn, controller, task_pools["a"], states["a"], np.arange(12), settings(), 1.0,
                            torch.Generator().manual_seed(0))
    losses["total"].backward()
    grads = {name: p.grad for name, p in controller.named_parameters()}
    assert all(g is not None for g in grads.values())
    for name in ("head_logits", "task_projection.1.weight", "feature_projection.1.weight"):
        assert grads[name].abs().sum() > 0, name


def test_every_mask_keeps_exactly_the_budget_and_passes_the_gradient_to_the_logits():
    logits = torch.randn(3, 5, requires_grad=True)
    generator = torch.Generator().manual_seed(0)
    for keep in (1, 7, 15):
        mask = exact_budget_mask(logits, keep, 1.0, generator, ALL_HEADS)
        assert set(mask.detach().unique().tolist()) <= {0.0, 1.0} and mask.detach().sum() == keep
    upstream = torch.randn(3, 5)
    (mask * upstream).sum().backward()
    assert torch.equal(logits.grad, upstream)  # straight-through: d loss / d logit = d loss / d mask


def test_without_noise_the_mask_keeps_the_largest_logits():
    logits = torch.tensor([[0.3, -1.0, 2.0], [0.1, 5.0, -0.2]])
    mask = exact_budget_mask(logits, 3, 0.0, torch.Generator().manual_seed(0), torch.ones(2, 3, dtype=torch.bool))
    assert mask.tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def test_a_removed_head_is_never_kept_and_gets_no_gradient():
    logits = torch.randn(3, 5, requires_grad=True)
    surviving = ALL_HEADS.clone()
    surviving[0, :3] = False
    surviving[2, 4] = False
    logits.data[~surviving] = 100.0  # the largest logits: without the exclusion they would always be kept
    generator = torch.Generator().manual_seed(0)
    for keep in (1, 6, 11):  # 11 = every surviving head
        mask = exact_budget_mask(logits, keep, 1.0, generator, surviving)
        assert mask.detach().sum() == keep and mask.detach()[~surviving].abs().sum() == 0
    (mask * torch.randn(3, 5)).sum().backward()
    assert logits.grad[~surviving].abs().sum() == 0 and logits.grad[surviving].abs().sum() > 0


def test_iterative_steps_end_at_the_ratio():
    assert step_ratios(0.7, 0.1) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert step_ratios(0.25, 0.1) == [0.1, 0.2, 0.25]
    assert step_ratios(0.3, 0.1) == [0.1, 0.2, 0.3]  # no step 0.30000000000000004 beside 0.3
    assert step_ratios(0.05, 0.1) == [0.05]


def test_unpruned_episodes_have_zero_kl_and_zero_task_loss(tiny_model, pools):
    model, _ = tiny_model
    task_pools, cnn = pools
    states = unpruned(task_pools)
    controller, _ = train_controller(model, cnn, task_pools, states, ["a"], settings())
    losses = episode_losses(model, cnn, controller, task_pools["a"], states["a"], np.arange(12), settings(ratio=0.0), 1.0,
                            torch.Generator().manual_seed(0))
    assert losses["kl"].item() == pytest.approx(0.0, abs=1e-6) and losses["task"].item() == pytest.approx(0.0, abs=1e-6)


def test_each_pass_shows_every_instance_once_in_episodes_of_one_task():
    schedule = episode_schedule({"a": 25, "b": 12}, k=10, passes=2, rng=np.random.default_rng(0))
    for task, size in (("a", 25), ("b", 12)):
        seen = np.concatenate([indices for name, indices in schedule if name == task])
        assert np.bincount(seen, minlength=size).tolist() == [2] * size
    assert min(len(indices) for _task, indices in schedule) >= 2  # a distance distribution needs two instances
    assert max(len(indices) for _task, indices in schedule) <= 10


def test_the_probe_module_reproduces_the_fitted_classifier():
    rng = np.random.default_rng(0)
    vectors, labels = rng.normal(size=(60, 5)), rng.integers(0, 2, 60)
    vectors[:, 0] += 2 * labels
    reference = linear_probe().fit(vectors, labels)
    logits = TaskProbe.fit(torch.as_tensor(vectors), torch.as_tensor(labels))(torch.as_tensor(vectors, dtype=torch.float32))
    expected = reference.predict_proba(vectors)[:, 1]
    assert np.allclose(torch.softmax(logits, dim=-1)[:, 1].numpy(), expected, atol=1e-5)


def test_same_seed_gives_the_same_importance(tiny_model, pools):
    model, _ = tiny_model
    task_pools, cnn = pools
    states = unpruned(task_pools)
    deltas = [train_controller(model, cnn, task_pools, states, ["a", "b"], settings())[0].importance(task_pools["unseen"])
              for _ in range(2)]
    assert torch.equal(deltas[0], deltas[1])


def planted_model(tokenizer) -> BertForSequenceClassification:
    """2 layers x 10 heads (a decile is 2 heads); head (1, 3) dominates the representation, head (0, 6) is an exact no-op."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=40, num_hidden_layers=2, num_attention_heads=10,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    model = BertForSequenceClassification(config).eval()
    d_h = head_size(model)
    with torch.no_grad():
        dominant = attention_blocks(model)[1].self_attention.value
        dominant.weight[3 * d_h:4 * d_h] *= 30
        dominant.bias[3 * d_h:4 * d_h] *= 30
        no_op = attention_blocks(model)[0].self_attention.value
        no_op.weight[6 * d_h:7 * d_h] = 0  # its context vector is 0: removing it changes nothing
        no_op.bias[6 * d_h:7 * d_h] = 0
    return model


@pytest.mark.parametrize("task_weight", [0.0, 1.0], ids=["label-free", "with-task-loss"])
def test_a_planted_head_ranks_in_the_top_decile_and_a_no_op_head_in_the_bottom_decile(tiny_model, task_weight):
    """The no-op's removal costs exactly 0, the least any head can cost under the KL alone. With the task
    term, a random model has heads whose removal lowers the probe's loss, and they rightly rank below it."""
    _, tokenizer = tiny_model
    model = planted_model(tokenizer)
    task_pools, cnn = make_pools(model, tokenizer, tasks=(("a", 1), ("b", 2)), count=48)
    controller, history = train_controller(model, cnn, task_pools, unpruned(task_pools, task_weight), ["a", "b"],
                                           settings(ratio=0.25, passes=6, task_weight=task_weight, cnn_weight=0.0))
    dominant, no_op = 1 * 10 + 3, 0 * 10 + 6
    for task in ("a", "b"):
        order = torch.argsort(controller.importance(task_pools[task]).flatten(), descending=True).tolist()
        assert dominant in order[:2], order
        if task_weight == 0:
            assert no_op in order[-2:], order
    assert np.mean([h["total"] for h in history[-5:]]) < 0.8 * np.mean([h["total"] for h in history[:5]])


def test_iterative_pruning_removes_by_steps_keeps_the_planted_head_and_drops_the_no_op_first(tiny_model):
    """Label-free, so that the no-op's removal costs the least any head's can (see the test above)."""
    _, tokenizer = tiny_model
    model = planted_model(tokenizer)
    task_pools, cnn = make_pools(model, tokenizer, tasks=(("a", 1), ("b", 2), ("unseen", 3)), count=48)
    run = settings(ratio=0.5, passes=3, task_weight=0.0, cnn_weight=0.0)
    steps, history, scores = train_iterative(model, cnn, task_pools, ["a", "b"], run, step=0.25)
    dominant, no_op = 1 * 10 + 3, 0 * 10 + 6
    assert sorted({record["ratio"] for record in history}) == [0.25, 0.5]
    for task in ("a", "b", "unseen"):
        flat = scores[task].flatten()
        assert ((flat < 1).sum(), ((flat >= 1) & (flat < 2)).sum(), (flat >= 2).sum()) == (5, 5, 10)  # 5 heads a step
        assert dominant in torch.argsort(flat, descending=True)[:2].tolist()
    for task in ("a", "b"):
        assert scores[task].flatten()[no_op] < 1  # removed in the first step
    # The saved weights of each step replay the removal on any task: what the transfer_scores stage does.
    replayed = []
    for state in steps:
        controller = new_controller(model, task_pools, ["a", "b"], run)
        controller.load_state_dict(state)
        replayed.append(controller.eval())
    for task in task_pools:
        assert torch.equal(removal_scores(replayed, task_pools[task], step_ratios(run.ratio, 0.25)), scores[task])
    _, _, first_step = train_iterative(model, cnn, task_pools, ["a", "b"], replace(run, ratio=0.25), step=0.25)
    for task in task_pools:  # a shorter run is the longer run's first steps
        assert torch.equal(torch.argsort(first_step[task].flatten())[:5].sort().values,
                           torch.argsort(scores[task].flatten())[:5].sort().values)


def structured_controller(model):
    from mcap.budget import UnitCosts
    from mcap.controller import StructuredMetaController

    return StructuredMetaController(model.config.hidden_size, 8, 2, model.config.num_attention_heads,
                                    model.config.intermediate_size, 8, UnitCosts.of(model.config, SIZE))


def test_structured_masks_remove_heads_and_whole_neuron_groups_within_the_mac_budget(tiny_model):
    model, _ = tiny_model  # 2 layers x 4 heads, FFN width 64: 8 groups of 8 per layer
    controller = structured_controller(model)
    with torch.no_grad():
        controller.group_logits.copy_(torch.randn(2, 8))
        controller.heads.head_logits.copy_(torch.randn(2, 4))
    generator = torch.Generator().manual_seed(0)
    total = float(controller.cost.sum())
    for ratio in (0.1, 0.4, 0.7):
        masks = controller.sample_masks(torch.randn(32), torch.randn(2, 4, 8), ratio, torch.ones(2, 4, dtype=torch.bool),
                                        1.0, generator)
        heads, neurons = masks.heads.detach(), torch.stack(masks.neurons).detach()  # (2, 4), (2, 64)
        groups = neurons.view(2, 8, 8)
        assert torch.equal(groups, groups[..., :1].expand(-1, -1, 8))  # a group is kept or removed whole
        removed = float((1 - heads).sum()) * controller.cost[0] + float((1 - groups[..., 0]).sum()) * controller.cost[-1]
        assert ratio * total - float(controller.cost.max()) < removed <= ratio * total
    upstream = [torch.randn(64), torch.randn(64)]
    sum((mask * grad).sum() for mask, grad in zip(masks.neurons, upstream)).backward()
    # Straight-through: a group's mask gets its neurons' summed gradient; the centring over all 8 heads and 16 groups
    # then takes the mean over the units away.
    per_group = torch.stack(upstream).view(2, 8, 8).sum(-1)
    assert torch.allclose(controller.group_logits.grad, per_group - per_group.sum() / 24, atol=1e-5)


def test_a_gain_every_unit_shares_moves_neither_heads_nor_neuron_groups_ahead_of_the_other(tiny_model):
    """Keeping any unit lowers the loss, so the straight-through gradient pushes every logit up. A push shared by
    every unit alike must not change the order: neither kind of unit may gain a level of its own (which would put
    every unit of the other kind first in the removal order)."""
    model, _ = tiny_model
    controller = structured_controller(model)
    optimizer = torch.optim.Adam(controller.unit_logit_parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(0)
    task, features, surviving = torch.randn(32), torch.randn(2, 4, 8), torch.ones(2, 4, dtype=torch.bool)
    for _ in range(20):
        masks = controller.sample_masks(task, features, 0.3, surviving, 1.0, generator)
        kept_units = masks.heads.sum() + sum(mask.sum() / 8 for mask in masks.neurons)  # a group of 8 neurons is one unit
        optimizer.zero_grad()
        (-kept_units).backward()  # the same gain for each unit kept
        optimizer.step()
    head_logits, group_logits = controller(task, features)
    assert head_logits.abs().max() < 1e-5 and group_logits.abs().max() < 1e-5  # all still tied at the common level 0
    with torch.no_grad():
        controller.group_logits.add_(3.0)  # a level of the groups' own is removed with the heads' common level
    head_logits, group_logits = controller(task, features)
    assert torch.cat([head_logits.flatten(), group_logits.flatten()]).mean().abs() < 1e-5
    assert float(group_logits.mean() - head_logits.mean()) == pytest.approx(3.0, abs=1e-5)


def test_a_planted_neuron_group_ranks_first_among_the_groups(tiny_model):
    """The structured controller learns which FFN neuron groups matter, as the head controller learns heads: group
    2 of layer 1 dominates the representation. Label-free (KL only)."""
    from mcap.controller import StructuredMetaController

    _, tokenizer = tiny_model
    model = planted_model(tokenizer)
    with torch.no_grad():
        model.bert.encoder.layer[1].output.dense.weight[:, 16:24] *= 30
    task_pools, cnn = make_pools(model, tokenizer, tasks=(("a", 1), ("b", 2)), count=48)
    run = replace(settings(ratio=0.3, passes=12, task_weight=0.0, cnn_weight=0.0), neuron_group_size=8, mac_seq_len=SIZE)
    controller, history = train_controller(model, cnn, task_pools, unpruned(task_pools, 0.0), ["a", "b"], run)
    assert isinstance(controller, StructuredMetaController)
    dominant = 1 * 8 + 2
    for task in ("a", "b"):
        head_delta, group_delta = controller.importance(task_pools[task])
        assert head_delta.shape == (2, 10) and group_delta.shape == (2, 8)
        order = torch.argsort(group_delta.flatten(), descending=True).tolist()
        assert order[0] == dominant, order
    assert np.mean([h["total"] for h in history[-5:]]) < 0.8 * np.mean([h["total"] for h in history[:5]])


def test_iterative_diagnostics_report_the_objective_per_step():
    history = [{"total": 1.0, "ratio": 0.1}] * 10 + [{"total": 0.5, "ratio": 0.1}] * 10 + [{"total": 2.0, "ratio": 0.2}] * 20
    order = np.arange(8.0).reshape(2, 4)
    report = iterative_diagnostics({0: history, 1: history}, {0: {"a": order}, 1: {"a": -order}}, 0, ["a"])
    assert [(step["ratio"], step["objective_end_over_start"]) for step in report["steps"]] == [(0.1, 0.5), (0.2, 1.0)]
    assert report["objective_end_over_start_max"] == 1.0
    assert report["seed_spearman_min"] == pytest.approx(-1.0)
    assert "delta_std" not in report  # the step offsets would set it


def test_diagnostics_tell_a_learned_ranking_from_a_tie_break():
    rng = np.random.default_rng(0)
    learned = rng.normal(size=(2, 4))
    deltas = {0: {"a": learned, "b": learned + 0.01}, 1: {"a": learned + 0.02, "b": learned}}
    history = [{"total": 1.0}] * 10 + [{"total": 0.5}] * 10
    report = controller_diagnostics({0: history, 1: history}, deltas, 0, ["a", "b"])
    assert report["seed_spearman_min"] == pytest.approx(1.0) and report["task_spearman"]["a~b"] == pytest.approx(1.0)
    assert report["objective_end_over_start"] == pytest.approx(0.5)
    tie_break = {0: {"a": 0.8 + 1e-4 * np.arange(8).reshape(2, 4), "b": 0.8 + 1e-4 * np.arange(8).reshape(2, 4)}}
    tied = controller_diagnostics({0: history}, tie_break, 0, ["a", "b"])
    assert tied["std_over_median_gap"] < 3 and tied["seed_spearman_min"] is None


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
