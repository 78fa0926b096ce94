"""What the meta-controller stages learn from (each task's pooled train sentences as the unpruned model sees them),
where they keep their controllers, and the scores a trained controller gives a task."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mcap.attention_maps import extract_maps
from mcap.controller import (
    Controller,
    ControllerSettings,
    TaskPool,
    build_pool,
    new_controller,
    removal_scores,
    step_ratios,
)
from mcap.patterns import PatternCNN
from mcap.probe import TaskProbe
from mcap.structured import learned_scores_json

MAP_BATCH_SIZE = 32
ITERATIVE, STRUCTURED, JOINT = "mcap_iterative", "structured_mcap", "mcap_joint"
CONTROLLED = ("mcap", ITERATIVE, STRUCTURED, JOINT)  # the strategies a controller stage learns scores for
CONTROLLERS = Path("models/controllers")  # <strategy>/<ratio>/: the controllers each controller stage trains


def task_pools(model: nn.Module, tokenizer, cnn: PatternCNN, frames: Mapping[str, pd.DataFrame],
               map_length: int) -> dict[str, TaskPool]:
    """Per task, its sentences' representations and per-head pattern features in the unpruned ``model`` (the maps
    cut to ``map_length`` tokens) with their labels."""
    return {task: build_pool(model, cnn, extract_maps(model, tokenizer, list(frame["sentence"]), map_length,
                                                      MAP_BATCH_SIZE), frame["label"].to_numpy())
            for task, frame in frames.items()}


def unpruned_probes(pools: Mapping[str, TaskPool], tasks: list[str]) -> dict[str, TaskProbe]:
    """The task term's linear probes, fitted once on the unpruned model's sentence vectors of each of ``tasks``."""
    return {task: TaskProbe.fit(pools[task].representations, pools[task].labels) for task in tasks}


def controller_path(strategy: str, ratio: float, seed: int, step: int | None = None) -> Path:
    """Where the controller stage of ``strategy`` at ``ratio`` keeps its controller of ``seed`` (``mcap_iterative``:
    as each step left it, numbered from 0)."""
    name = f"controller-seed-{seed}" + ("" if step is None else f"-step-{step}") + ".safetensors"
    return CONTROLLERS / strategy / str(ratio) / name


def save_controller(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """A controller's weights (``state_dict``), written from the CPU whatever device trained them."""
    save_file({name: tensor.detach().cpu() for name, tensor in state.items()}, str(path))


def load_controller(path: Path, model: nn.Module, pool: TaskPool, settings: ControllerSettings) -> Controller:
    """A trained controller for ``model`` and the pools' CNN features, in eval mode."""
    controller = new_controller(model, {"pool": pool}, ["pool"], settings)
    controller.load_state_dict(load_file(str(path)))
    return controller.eval()


def controller_scores(strategy: str, model: nn.Module, pool: TaskPool, settings: ControllerSettings,
                      iterative_step: float) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The scores the trained controller of ``strategy`` and seed ``settings.seed`` gives the task of ``pool``, as
    its controller stage computes them for the tasks it trains with: δ (``mcap``), the removal scores of the steps
    replayed (``mcap_iterative``), or the logits of heads and neuron groups (``structured_mcap``)."""
    if strategy == ITERATIVE:
        ratios = step_ratios(settings.ratio, iterative_step)
        steps = [load_controller(controller_path(strategy, settings.ratio, settings.seed, step), model, pool, settings)
                 for step in range(len(ratios))]
        return removal_scores(steps, pool, ratios)
    path = controller_path(strategy, settings.ratio, settings.seed)
    return load_controller(path, model, pool, settings).importance(pool)


def json_scores(scores: torch.Tensor | tuple[torch.Tensor, torch.Tensor], group_size: int | None) -> Any:
    """A task's scores as the strategy reads them: (layers, heads), or with neuron groups heads and groups."""
    return scores.tolist() if group_size is None else learned_scores_json(*scores, group_size)


def scores_record(task: str, train_tasks: list[str], by_seed: Mapping[int, Any], group_size: int | None) -> dict:
    """The JSON a learned strategy prunes ``task`` with: its scores per controller seed."""
    return {"task": task, "meta_trained_on": train_tasks, "seen_in_meta_training": task in train_tasks,
            "delta_by_seed": {str(seed): json_scores(scores, group_size) for seed, scores in by_seed.items()}}


def transfer_scores(strategy: str, task: str, ratio: float, params) -> dict:
    """The scores record (:func:`scores_record`) of ``strategy``'s trained controllers at ``ratio``, one per seed of
    mcap.seeds, for ``task``, which no controller trained on: δ inference only, as the paper's transfer claim has it
    (the controller applied to the task's pooled sentences, the computation its stage makes for its own tasks)."""
    from mcap.modeling import load_pretrained
    from mcap.patterns import load_pattern_cnn
    from mcap.splits import pooled_sentences

    mcap = params.mcap
    structured = strategy == STRUCTURED
    model, tokenizer = load_pretrained(params.model.name_or_path, mcap.seeds[0])  # as the controller stage loads it
    pool = task_pools(model, tokenizer, load_pattern_cnn(), pooled_sentences([task], mcap.pool_examples),
                      mcap.map_length)[task]
    by_seed = {}
    for seed in mcap.seeds:
        settings = ControllerSettings.of(mcap, ratio, seed, strategy == ITERATIVE,
                                         params.train.max_seq_len if structured else None)
        by_seed[seed] = controller_scores(strategy, model, pool, settings, mcap.iterative_step)
    return scores_record(task, mcap.train_tasks, by_seed, mcap.neuron_group_size if structured else None)
