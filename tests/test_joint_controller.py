"""mcap_joint: head masks learned on the task loss while a copy of the model adapts, then δ for the pre-trained one."""

import numpy as np
import pytest
import torch

from conftest import TRAIN_SETTINGS, make_sentences
from mcap.attention_maps import extract_maps
from mcap.controller import ControllerSettings, build_pool, new_controller, noise_at, rdd_kl, sentence_representations
from mcap.errors import McapError
from mcap.joint_controller import (
    JointController,
    JointSettings,
    joint_episode_losses,
    padded,
    pretrained_vectors,
    train_joint,
)
from mcap.meta_training import load_controller
from mcap.patterns import PatternCNN
from mcap.training import encode
from test_mcap import settings as controller_settings

MAP_LENGTH, COUNT = 16, 24
TASKS = (("a", 1), ("b", 2))


def joint_settings(**overrides) -> ControllerSettings:
    return controller_settings(**{"k": 8, "passes": 2, "learning_rate": 0.1, "conditional_learning_rate": 0.01,
                                  **overrides})


def task_data(model, tokenizer, tasks=TASKS, count=COUNT):
    """Per task: its pool (maps cut to MAP_LENGTH tokens) and the same sentences encoded whole, in the same order."""
    torch.manual_seed(0)
    cnn = PatternCNN().eval()
    pools, examples = {}, {}
    for task, seed in tasks:
        frame = make_sentences(count, seed)
        pools[task] = build_pool(model, cnn, extract_maps(model, tokenizer, list(frame["sentence"]), MAP_LENGTH, 8),
                                 frame["label"].to_numpy())
        examples[task] = encode(tokenizer, frame, 32)
    return pools, examples


@pytest.fixture
def data(tiny_model):
    model, tokenizer = tiny_model
    return task_data(model, tokenizer)


def trained(tiny_model_dir, tiny_model, data, kl_weight=1.0, learning_rate=1e-3, **overrides):
    pools, examples = data
    training = TRAIN_SETTINGS.model_copy(update={"learning_rates": [learning_rate]})
    return train_joint(str(tiny_model_dir), tiny_model[1], pools, examples, joint_settings(**overrides), training,
                       kl_weight)


def test_every_task_starts_at_equal_logits_and_learns_its_own(tiny_model_dir, tiny_model, data):
    model, _tokenizer = tiny_model
    pools, _examples = data
    untrained = JointController(new_controller(model, pools, list(pools), joint_settings()), list(pools))
    for task, pool in pools.items():
        assert torch.equal(untrained.importance(task, pool), torch.full((2, 4), 0.5))
    shared, history, deltas = trained(tiny_model_dir, tiny_model, data)
    assert len(history) == 2 * 2 * 3  # passes x tasks x episodes of 8 of 24 sentences
    assert torch.equal(shared.head_logits, torch.zeros(2, 4))  # the task logits take the per-head role
    assert not torch.allclose(deltas["a"], deltas["b"])  # each task's own logits moved
    assert all(float(delta.std()) > 0 for delta in deltas.values())


def test_the_same_seed_gives_the_same_delta_and_another_seed_another(tiny_model_dir, tiny_model, data):
    first, again, other = (trained(tiny_model_dir, tiny_model, data, seed=seed)[2] for seed in (0, 0, 1))
    assert all(torch.equal(first[task], again[task]) for task in first)
    assert not torch.equal(first["a"], other["a"])


def test_the_loss_is_the_cross_entropy_plus_lambda_times_the_per_instance_kl(tiny_model, data):
    model, tokenizer = tiny_model
    pools, examples = data
    pool = pools["a"]
    controller = JointController(new_controller(model, pools, list(pools), joint_settings()), list(pools))
    index = torch.arange(8)
    batch = padded(tokenizer, examples["a"][:8], torch.device("cpu"))
    reference = pretrained_vectors(model.eval(), tokenizer, examples["a"][:8])
    for kl_weight in (0.0, 3.0):
        losses = joint_episode_losses(model, controller, "a", pool, index, batch, reference,
                                      joint_settings(ratio=0.0), kl_weight, 0.0, torch.Generator().manual_seed(0))
        assert float(losses["kl"].detach()) == pytest.approx(0.0, abs=1e-6)  # every head kept, weights unchanged: no distortion
        assert float(losses["total"].detach()) == pytest.approx(float((losses["task"] + kl_weight * losses["kl"]).detach()))
    losses = joint_episode_losses(model, controller, "a", pool, index, batch, reference, joint_settings(ratio=0.5), 2.0,
                                  0.0, torch.Generator().manual_seed(0))
    pruned_kl = float(losses["kl"].detach())
    assert pruned_kl > 0
    with torch.no_grad():  # the per-instance KL: the paper's sum over the episode's instances over k
        whole = sentence_representations(model, batch["input_ids"], batch["attention_mask"])
    assert float(rdd_kl(reference, whole)) == pytest.approx(0.0, abs=1e-5)
    assert float(losses["total"].detach()) == pytest.approx(float(losses["task"].detach()) + 2.0 * pruned_kl)


def test_the_kl_holds_the_adapting_encoder_near_the_pre_trained_one(tiny_model_dir, tiny_model, data):
    def kl(kl_weight):  # mean over the first and the last pass (6 episodes each)
        history = trained(tiny_model_dir, tiny_model, data, kl_weight, learning_rate=3e-3, passes=6)[1]
        return [np.mean([record["kl"] for record in part]) for part in (history[:6], history[-6:])]

    (free_start, free_end), (_, held_end) = kl(0.0), kl(50.0)
    assert free_end > 1.5 * free_start  # without the KL the encoder drifts from the pre-trained one ...
    assert held_end < 0.6 * free_end  # ... which the KL holds back


def test_a_transfer_task_gets_g_alone_from_the_saved_controller(tiny_model_dir, tiny_model, data):
    model, tokenizer = tiny_model
    shared, _history, _deltas = trained(tiny_model_dir, tiny_model, data)
    unseen = task_data(model, tokenizer, tasks=(("unseen", 3),))[0]["unseen"]
    from mcap.meta_training import save_controller

    path = tiny_model_dir.parent / "joint-controller.safetensors"
    save_controller(shared.state_dict(), path)
    loaded = load_controller(path, model, unseen, joint_settings())
    expected = torch.sigmoid(shared(unseen.representations.mean(dim=0), unseen.head_features.mean(dim=0)))
    assert torch.allclose(loaded.importance(unseen), expected)
    assert float(expected.std()) > 0  # g itself learned, not only the training tasks' logits


def test_the_noise_is_annealed_over_the_episodes(tiny_model_dir, tiny_model, data):
    history = trained(tiny_model_dir, tiny_model, data)[1]
    settings = joint_settings()
    assert [record["noise"] for record in history] == [noise_at(e, len(history), settings) for e in range(len(history))]


def test_a_negative_kl_weight_is_refused_naming_the_key():
    with pytest.raises(McapError, match=r"'mcap_joint.kl_weight' must be a number ≥ 0, got -1.0"):
        JointSettings.read({"mcap_joint": {"kl_weight": -1.0}})
