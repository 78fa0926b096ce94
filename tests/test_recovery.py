"""Recovery after structured pruning: distillation from the unpruned model and cross-entropy on the labels, each a
short retraining of a copy that keeps the pruned architecture."""

import copy

import pytest
import torch

from conftest import make_sentences
from mcap.heads import count_heads, prune_heads
from mcap.modeling import reset_task_head
from mcap.params import TrainSettings
from mcap.recovery import distillation_loss, recovered
from mcap.training import make_loader, predict_logits

SETTINGS = TrainSettings(epochs=1, learning_rates=[1e-3], batch_size=8, max_seq_len=32, weight_decay=0.01,
                         warmup_ratio=0.1, select_metric="mcc")


def test_distillation_loss_is_t_squared_times_the_kl_of_the_softened_distributions():
    student, teacher = torch.tensor([[0.3, -1.0], [2.0, 0.5]]), torch.tensor([[1.0, -1.0], [0.0, 0.5]])
    assert distillation_loss(teacher, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    p, q = (torch.softmax(logits / 2.0, dim=-1) for logits in (teacher, student))
    kl = (p * (p / q).log()).sum(dim=-1).mean()
    assert distillation_loss(student, teacher, 2.0).item() == pytest.approx(4.0 * kl.item(), rel=1e-5)


def pruned_and_teacher(tiny_model_factory):
    """(a copy with 3 of 8 heads removed and a new task head, a teacher that has learnt the task, its tokenizer)."""
    model, tokenizer = tiny_model_factory()
    teacher, _losses = recovered(model, model, batches(tokenizer, sentences=768), "cross_entropy", 3e-3, 2.0, SETTINGS)
    pruned = copy.deepcopy(teacher)
    prune_heads(pruned, {0: [0, 1], 1: [2]})
    reset_task_head(pruned, seed=5)  # far from the teacher: in a tiny model the heads alone change little
    return pruned, teacher, tokenizer


def batches(tokenizer, seed=7, sentences=48):
    return make_loader(tokenizer, make_sentences(sentences, seed=1), SETTINGS.batch_size, 32, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))


def test_distillation_brings_the_pruned_model_towards_its_teacher_and_leaves_the_original_as_it_was(
        tiny_model_factory):
    pruned, teacher, tokenizer = pruned_and_teacher(tiny_model_factory)
    before = copy.deepcopy(pruned.state_dict())
    sentences = list(make_loader(tokenizer, make_sentences(48, seed=1), 16, 32))

    def gap(model):
        return distillation_loss(*(torch.from_numpy(predict_logits(m, sentences)[0]) for m in (model, teacher)),
                                 2.0).item()

    student, losses = recovered(pruned, teacher, batches(tokenizer), "distill", 3e-3, 2.0, SETTINGS)
    assert len(losses) == 6 and gap(student) < gap(pruned)
    assert count_heads(student) == count_heads(pruned) == 8 - 3  # the architecture is kept
    assert all(torch.equal(before[name], value) for name, value in pruned.state_dict().items())


def test_cross_entropy_lowers_the_loss_on_the_labels_with_the_same_batches_as_distillation(tiny_model_factory):
    pruned, teacher, tokenizer = pruned_and_teacher(tiny_model_factory)
    train = list(make_loader(tokenizer, make_sentences(48, seed=1), 16, 32))

    def loss(model):
        logits, labels = predict_logits(model, train)
        return torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels).long()).item()

    student, _losses = recovered(pruned, teacher, batches(tokenizer, sentences=768), "cross_entropy", 3e-3, 2.0,
                                 SETTINGS)
    assert loss(student) < loss(pruned) - 0.1
    assert [b["input_ids"].tolist() for b in batches(tokenizer)] == [b["input_ids"].tolist() for b in batches(tokenizer)]
    with pytest.raises(ValueError, match="unknown recovery 'kd'"):
        recovered(pruned, teacher, batches(tokenizer), "kd", 3e-3, 2.0, SETTINGS)
