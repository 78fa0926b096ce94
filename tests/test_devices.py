"""Device placement: every tensor a computation creates lands on the device of the data it meets.

A CPU-only machine has one real device, so the check makes a second one: every tensor created without an explicit
device (``torch.zeros(n)``, ``torch.rand(shape)``) lands on the meta device, and any torch operation whose tensor
arguments sit on two devices raises. The model and the tokenizer's batches stay on the CPU, as a data loader's do on
a GPU machine before they are moved. Code that creates its tensors where its data lives computes as usual; code that
would put a CPU tensor next to a GPU model's tensors fails here.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from conftest import PRUNE_SETTINGS, make_sentences

# Meant to take tensors of two devices: a copy, and the type check of Module.to_empty (nn.utils.skip_init).
CROSSING = {torch.Tensor.copy_, torch._has_compatible_shallow_copy_type}


class NoDeviceMixing(TorchFunctionMode):
    """Raise on a torch operation with tensor arguments on two devices (0-dim tensors aside: CUDA kernels take CPU
    scalars)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        devices = {value.device for value in tree_flatten((args, kwargs))[0]
                   if isinstance(value, torch.Tensor) and value.dim() > 0}
        if len(devices) > 1 and func not in CROSSING:
            raise RuntimeError(f"device mixing in {getattr(func, '__name__', func)}: {sorted(map(str, devices))}")
        return func(*args, **kwargs)


def on_the_cpu(function):
    """``function`` with the CPU as its default device: what makes batches and loads models."""
    def wrapped(*args, **kwargs):
        with torch.device("cpu"):
            return function(*args, **kwargs)
    return wrapped


@contextmanager
def implicit_tensors_elsewhere(monkeypatch=None):
    """Implicitly placed tensors on the meta device, and no operation across devices (see the module docstring); with
    ``monkeypatch``, the tokenizer's batches and the data loaders on the CPU."""
    if monkeypatch is not None:
        from torch.utils.data.dataloader import _BaseDataLoaderIter
        from transformers import BatchEncoding

        for owner, name in ((BatchEncoding, "convert_to_tensors"), (_BaseDataLoaderIter, "__init__"),
                            (_BaseDataLoaderIter, "__next__")):
            monkeypatch.setattr(owner, name, on_the_cpu(getattr(owner, name)))
    with NoDeviceMixing():
        torch.set_default_device("meta")
        try:
            yield
        finally:
            torch.set_default_device(None)


def test_the_check_fails_a_tensor_made_on_the_default_device_and_passes_one_made_beside_its_data():
    data = torch.ones(3)
    with implicit_tensors_elsewhere():
        with pytest.raises(RuntimeError, match=r"device mixing in add: \['cpu', 'meta'\]"):
            torch.zeros(3) + data
        assert torch.equal(torch.zeros(3, device=data.device) + data, data)


def labelled_batches(tokenizer, count: int = 12, size: int = 4) -> list[dict[str, torch.Tensor]]:
    frame = make_sentences(count, seed=3)
    return [{**tokenizer(list(part["sentence"]), padding=True, return_tensors="pt"),
             "labels": torch.tensor(part["label"].to_numpy())} for part in (frame[i:i + size] for i in range(0, count, size))]


@pytest.mark.parametrize("name", ["none", "imp", "l1_unstructured", "random_unstructured", "head_sep", "head_entropy",
                                  "head_random", "head_gradient", "structured_gradient", "mcap", "structured_mcap"])
def test_every_strategy_prunes_where_its_model_lives(tiny_model, name, monkeypatch):
    from mcap.strategies import get_strategy
    from mcap.strategies.base import PruneContext

    model, tokenizer = tiny_model
    learned = {"mcap": [[0.1, 0.9, 0.5, 0.3], [0.2, 0.8, 0.6, 0.4]],
               "structured_mcap": {"heads": [[0.1, 0.9, 0.5, 0.3], [0.2, 0.8, 0.6, 0.4]],
                                   "neuron_groups": [[0.3, 0.1, 0.2, 0.4], [0.5, 0.6, 0.7, 0.8]],
                                   "neuron_group_size": 16}}.get(name)
    context = PruneContext(model=model, tokenizer=tokenizer, task="toy", train=make_sentences(32, seed=1), ratio=0.5,
                           seed=0, settings=PRUNE_SETTINGS, max_seq_len=32, batch_size=8, learned=learned)
    with implicit_tensors_elsewhere(monkeypatch):
        get_strategy(name).apply(context)


def test_the_controller_trains_and_scores_where_its_model_lives(tiny_model, monkeypatch):
    from mcap.attention_maps import extract_maps
    from mcap.controller import build_pool, train_controller, unpruned_states
    from mcap.patterns import PatternCNN
    from mcap.probe import TaskProbe
    from test_mcap import SIZE, settings

    model, tokenizer = tiny_model
    torch.manual_seed(0)
    cnn = PatternCNN().eval()
    frames = {task: make_sentences(12, seed) for task, seed in (("a", 1), ("b", 2))}
    maps = {task: extract_maps(model, tokenizer, list(frame["sentence"]), SIZE, 8) for task, frame in frames.items()}
    with implicit_tensors_elsewhere(monkeypatch):
        pools = {task: build_pool(model, cnn, maps[task], frame["label"].to_numpy()) for task, frame in frames.items()}
        probes = {task: TaskProbe.fit(pool.representations, pool.labels) for task, pool in pools.items()}
        controller, _history = train_controller(model, cnn, pools, unpruned_states(pools, probes, 1.0), ["a", "b"],
                                                settings(k=6))
        importance = controller.importance(pools["a"])
    assert importance.shape == (2, 4) and importance.isfinite().all()


def test_the_fisher_pass_and_both_reconstructions_run_where_the_model_lives(tiny_model, monkeypatch):
    import copy

    from mcap.budget import UnitCosts
    from mcap.reconstruction import reconstruct, reconstruction_targets, relative_errors
    from mcap.structured import rearrange_masks, remove_units, select_units, unit_statistics

    model, tokenizer = tiny_model
    batches = labelled_batches(tokenizer)
    with implicit_tensors_elsewhere(monkeypatch):
        statistics = unit_statistics(model, batches, blocks=True)
        costs = UnitCosts.of(model.config, 32)
        selection = rearrange_masks(select_units(torch.stack(statistics.head_fisher), statistics.neuron_fisher, costs,
                                                 0.4), statistics)
        targets = reconstruction_targets(model, batches)
        for method in ("scales", "refit"):
            pruned = copy.deepcopy(model)
            remove_units(pruned, selection)
            assert reconstruct(pruned, targets, method) and len(relative_errors(pruned, targets)) == 4


def test_a_fine_tuning_step_runs_where_the_model_lives(tiny_model_dir, monkeypatch):
    from mcap.modeling import load_model
    from mcap.params import TrainSettings
    from mcap.training import finetune_grid

    _model, tokenizer, _pruning = load_model(tiny_model_dir)
    settings = TrainSettings(epochs=1, learning_rates=[1e-3], batch_size=8, max_seq_len=32, weight_decay=0.01,
                             warmup_ratio=0.1, select_metric="mcc")
    with implicit_tensors_elsewhere(monkeypatch):
        result = finetune_grid(lambda: on_the_cpu(load_model)(tiny_model_dir)[0], make_sentences(16, 1), make_sentences(8, 2),
                               tokenizer, settings, seed=0, keep_zeros=True)
    assert result.histories[1e-3][-1]["val_loss"] > 0
