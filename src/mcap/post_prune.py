"""Structured pruning after fine-tuning, without retraining (Kwon et al. 2022, "A Fast Post-Training
Pruning Framework for Transformers"), to a sweep of compute budgets, with deployable ONNX models.

For a fine-tuned unpruned classifier:

1. Fisher importance of every head and FFN neuron on a random sample of labelled train sentences
   (:func:`unit_statistics`; the sample drawn by the pruning seed, as Kwon et al. draw theirs);
2. for each budget, the least important units per MAC are removed up to that fraction of the encoder's
   MACs (:func:`select_units`, :func:`remove_units`), then each layer's removed heads and neurons are chosen
   again on its block of the Fisher matrix, at the same counts (:func:`rearrange_masks`) — or, given the scores
   of structured meta-controllers trained at each budget (``structured_mcap``, not in Kwon et al.), the heads and
   neuron groups of lowest score by the budget's controller (:func:`select_learned`);
3. the pruned model as it is (``none``) and after each reconstruction of ``post_prune.reconstructions``
   (:mod:`mcap.reconstruction`: per-unit scales or a refit of each output projection, towards the unpruned model
   or Kwon et al.'s teacher) is scored on validation and test; the best on validation is exported to ONNX,
   checked against PyTorch, and quantised to INT8. Its layout (heads and FFN width per layer) is recorded: time
   depends on the architecture alone, which every reconstruction keeps, so the post_prune_latency stage times each
   architecture once, on one machine (:mod:`mcap.architecture_latency`);
4. optionally, at the budgets of ``post_prune.recovery_mac_ratios``, the chosen model is retrained for one pass over
   the train sentences (:mod:`mcap.recovery`: distilled from the unpruned model, or on the labels), scored and
   exported; retraining keeps the architecture, so the budget's timing holds for it.

Deviations from Kwon et al.: the diagonal of the Fisher matrix ranks units greedily by importance per MAC (they
search the number of heads kept and fill the rest with neurons); the Fisher blocks of rearrangement are of each
example's gradients (theirs: of each mini-batch's); reconstruction fits only [CLS] in both sublayers of the last
layer (they do so in its FFN) and tunes the first layer's attention too.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from mcap.budget import UnitCosts
from mcap.deploy import DeployedModel, int8_quality, test_batches
from mcap.devices import pick_device
from mcap.errors import McapError
from mcap.evaluate import device_name, machine_record
from mcap.ffn import count_neurons, ffn_layout
from mcap.heads import count_heads, head_layout
from mcap.modeling import count_parameters
from mcap.params import Int8Settings, PostPruneSettings, TrainSettings
from mcap.reconstruction import (
    ReconstructionTargets,
    reconstruct,
    reconstruction_targets,
    relative_errors,
    teacher_ratio,
)
from mcap.recovery import recovered
from mcap.seeding import seed_everything
from mcap.structured import (
    StructuredSelection,
    rearrange_masks,
    remove_units,
    select_learned,
    select_units,
    unit_statistics,
)
from mcap.training import classification_metrics, make_loader, predict_logits

log = logging.getLogger(__name__)

BATCH_SIZE = 32  # of the importance and reconstruction passes


def onnx_name(ratio: float | None, recovery: str | None = None) -> str:
    """The ONNX file of the model pruned to ``ratio`` of the MACs (None: the unpruned model), retrained by
    ``recovery`` if given."""
    return "unpruned.onnx" if ratio is None else f"macs-removed-{ratio:g}{f'-{recovery}' if recovery else ''}.onnx"


def prune_after_finetuning(model: nn.Module, tokenizer, train: pd.DataFrame, validation: pd.DataFrame,
                           test: pd.DataFrame, settings: PostPruneSettings, threads: int, int8: Int8Settings,
                           max_seq_len: int, onnx_dir: Path,
                           learned_scores: Mapping[float, Mapping[str, Any]] | None = None,
                           training: TrainSettings | None = None, seed: int = 0, sample_seed: int = 0) -> dict:
    """Prune the fine-tuned unpruned ``model`` (CPU) to each of ``settings.mac_ratios``; write the ONNX models to
    ``onnx_dir`` (checked in onnxruntime with ``threads`` threads); return the metrics of the unpruned model and of
    every budget. Units are ranked by their Fisher
    importance, or, if ``learned_scores`` is given ({budget: a structured meta-controller's scores}), at each budget
    by the scores of the controller trained at it (:func:`select_learned`). With Fisher ranking, the masks are
    rearranged (:func:`rearrange_masks`), and each budget's record also holds the test metrics of the searched units
    before rearrangement and how many units rearrangement moved. The Fisher scores and the reconstruction statistics
    come from ``settings.examples`` train sentences drawn at random by ``sample_seed`` (a pruning seed), the errors out
    of sample from ``settings.held_out_examples`` others.

    At each budget the pruned model is scored as it is (``none``) and after each of ``settings.reconstructions``
    (``method/teacher``, :mod:`mcap.reconstruction`) on the validation and test sentences; the one with the best
    validation MCC (never test) is exported and checked, its layout recorded for the timing stage; with
    ``int8.enabled`` it and the unpruned model are quantised to INT8 and scored too. At the budgets of
    ``settings.recovery_mac_ratios``, each of ``settings.recoveries`` retrains the chosen model (batch size, weight
    decay and warm-up of ``training``; batch order and dropout from the fine-tuning ``seed``)."""
    if count_heads(model) != model.config.num_hidden_layers * model.config.num_attention_heads or (
            ffn_layout(model) != [model.config.intermediate_size] * model.config.num_hidden_layers):
        raise McapError("post_prune: takes a fine-tuned model without pruning (the 'none' strategy's)")
    if settings.recoveries and settings.recovery_mac_ratios and training is None:
        raise ValueError("post_prune: recoveries need the training settings")
    tuning, held_out = fisher_sample(train, settings.examples, settings.held_out_examples, sample_seed)
    tuning_batches, held_out_batches = (list(make_loader(tokenizer, sentences, BATCH_SIZE, max_seq_len))
                                        for sentences in (tuning, held_out))
    costs = UnitCosts.of(model.config, max_seq_len)
    # The Fisher pass and reconstruction run where pick_device points; quality and export on the CPU, in
    # fp32, as the ONNX model is deployed.
    working = copy.deepcopy(model).to(pick_device())
    teachers = {name.split("/")[1] for name in settings.reconstructions}
    statistics = (unit_statistics(working, tuning_batches, blocks=learned_scores is None)
                  if learned_scores is None or "kwon_sqrt" in teachers else None)
    fisher_search = (partial(select_units, torch.stack(statistics.head_fisher), statistics.neuron_fisher, costs)
                     if statistics else None)
    if learned_scores is None:
        search, rearrange = fisher_search, partial(rearrange_masks, statistics=statistics)
        ranking = {"ranking": "fisher", "fisher_examples": statistics.examples, "mask_rearrangement": True}
    else:
        def search(ratio: float) -> StructuredSelection:
            return select_learned(learned_scores[ratio], model.config.intermediate_size, costs, ratio)
        rearrange, ranking = None, {"ranking": "meta-controller"}  # the controller trained at each budget
    quality_batches, _ = test_batches(tokenizer, test, max_seq_len)
    validation_batches = list(make_loader(tokenizer, validation, BATCH_SIZE, max_seq_len))
    reference = DeployedModel(model, onnx_dir / onnx_name(None), quality_batches, threads)

    def quantized(deployed: DeployedModel) -> dict:
        return int8_quality(deployed, quality_batches, int8.per_channel, threads)[1]
    results = {"unpruned": {"test": reference.metrics, "onnx_max_abs_diff": reference.onnx_difference,
                            "parameters": count_parameters(model), "kept_heads": head_layout(model),
                            "intermediate_sizes": ffn_layout(model),
                            **({"int8": quantized(reference)} if int8.enabled else {})},
               **ranking, "mac_seq_len": max_seq_len, "sample_seed": sample_seed, "tuning_examples": len(tuning),
               "held_out_examples": len(held_out), "validation_examples": len(validation),
               "device_name": device_name(torch.device("cpu")), "threads": threads, "precision": "fp32",
               "statistics_device": working.device.type,
               "machine": machine_record(torch.device("cpu")), "budgets": []}

    def targets_of(teacher: nn.Module) -> dict[str, ReconstructionTargets]:
        return {"tuning": reconstruction_targets(teacher, tuning_batches),
                "held_out": reconstruction_targets(teacher, held_out_batches)}

    unpruned_targets = targets_of(working) if "unpruned" in teachers else None
    for ratio in settings.mac_ratios:
        selection, record = search(ratio), {}
        if rearrange is not None:
            searched, selection = selection, rearrange(selection)
            record = _rearrangement_record(model, searched, selection, quality_batches)
        targets = {"unpruned": unpruned_targets, "kwon_sqrt": (
            targets_of(_pruned(working, fisher_search(teacher_ratio(ratio)))) if "kwon_sqrt" in teachers else None)}
        pruned = _pruned(working, selection)
        # The pruned model's errors against each teacher, once: every method towards that teacher starts from them.
        untuned = {teacher: {sentences: relative_errors(pruned, sums) for sentences, sums in targets[teacher].items()}
                   for teacher in teachers}
        candidates = {"none": pruned, **{name: _reconstructed(pruned, targets, untuned, name, settings)
                                         for name in settings.reconstructions}}
        record |= _chosen_and_deployed(ratio, selection, candidates, validation_batches, quality_batches, threads,
                                       onnx_dir, quantized if int8.enabled else None)
        if ratio in settings.recovery_mac_ratios:
            chosen = candidates[record["chosen"]]
            record["recovered"] = {recovery: _recovered(
                chosen if record["chosen"] == "none" else chosen[0], working, recovery, train, tokenizer, settings,
                training, seed, max_seq_len, validation_batches, quality_batches, onnx_dir / onnx_name(ratio, recovery),
                threads, int8) for recovery in settings.recoveries}
        results["budgets"].append(record)
    return results


def fisher_sample(train: pd.DataFrame, examples: int, held_out_examples: int,
                  seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``examples`` train sentences drawn at random by ``seed`` (the Fisher scores' and the reconstruction's), and
    ``held_out_examples`` others drawn after them (each sublayer's reconstruction error out of sample)."""
    shuffled = train.sample(frac=1.0, random_state=seed)
    return shuffled.iloc[:examples], shuffled.iloc[examples:examples + held_out_examples]


def _pruned(model: nn.Module, selection: StructuredSelection) -> nn.Module:
    pruned = copy.deepcopy(model)
    remove_units(pruned, selection)
    return pruned


def _reconstructed(pruned: nn.Module, targets: dict[str, dict[str, ReconstructionTargets]],
                   untuned: dict[str, dict[str, list[float]]], name: str, settings: PostPruneSettings,
                   ) -> tuple[nn.Module, list[dict]]:
    """A copy of ``pruned`` reconstructed by ``name`` (``method/teacher``), and per sublayer its record with the
    relative reconstruction errors before (``untuned``: ``pruned``'s, per teacher) and after, on the tuning and on
    held-out train sentences."""
    method, teacher = name.split("/")
    wanted, tuned = targets[teacher], copy.deepcopy(pruned)
    sublayers = reconstruct(tuned, wanted["tuning"], method, ridge=settings.refit_ridge if method == "refit" else 1e-6,
                            stop_at_failure=settings.stop_at_failure)
    for sentences, sums in wanted.items():
        for when, errors in (("before", untuned[teacher][sentences]), ("after", relative_errors(tuned, sums))):
            for sublayer in sublayers:
                sublayer[f"error_{sentences}_{when}"] = errors[sublayer["sublayer"]]
    return tuned, sublayers


def _recovered(start: nn.Module, teacher: nn.Module, recovery: str, train: pd.DataFrame, tokenizer,
               settings: PostPruneSettings, training: TrainSettings, seed: int, max_seq_len: int, validation_batches,
               quality_batches, onnx_path: Path, threads: int, int8: Int8Settings) -> dict:
    """``start`` retrained by ``recovery`` for one pass over ``train`` (the same batches for every recovery), scored
    on validation and test, exported to ``onnx_path`` and checked; with ``int8.enabled``, its INT8 quality too."""
    generator = seed_everything(seed)
    loader = make_loader(tokenizer, train, training.batch_size, max_seq_len, shuffle=True, generator=generator)
    model, losses = recovered(start, teacher, loader, recovery, settings.recovery_learning_rate,
                              settings.distill_temperature, training)
    deployed = DeployedModel(model.cpu(), onnx_path, quality_batches, threads)
    tenth = max(1, len(losses) // 10)
    first, last = sum(losses[:tenth]) / tenth, sum(losses[-tenth:]) / tenth
    log.info("%s: %d steps, loss %.4f -> %.4f, test MCC %.4f", onnx_path.stem, len(losses), first, last,
             deployed.metrics["mcc"])
    return {"train_sentences": len(train), "steps": len(losses), "loss_first_tenth": first, "loss_last_tenth": last,
            "validation": classification_metrics(*predict_logits(deployed.model, validation_batches)),
            "test": deployed.metrics, "onnx_max_abs_diff": deployed.onnx_difference,
            **({"int8": int8_quality(deployed, quality_batches, int8.per_channel, threads)[1]} if int8.enabled else {})}


def _rearrangement_record(model: nn.Module, searched: StructuredSelection, rearranged: StructuredSelection,
                          quality_batches) -> dict:
    """For the record: the test metrics of the model pruned by the ``searched`` selection (no reconstruction), and
    how many of its removed units the ``rearranged`` one keeps instead."""
    def removed(selection: StructuredSelection) -> set[tuple[str, int, int]]:
        return ({("head", layer, unit) for layer, units in selection.heads.items() for unit in units}
                | {("neuron", layer, unit) for layer, units in selection.neurons.items() for unit in units})
    return {"rearranged_units": len(removed(searched) - removed(rearranged)),
            "test_without_rearrangement": classification_metrics(*predict_logits(_pruned(model, searched),
                                                                                 quality_batches))}


def _chosen_and_deployed(ratio: float, selection: StructuredSelection, candidates: dict, validation_batches,
                         quality_batches, threads: int, onnx_dir: Path,
                         quantized: Callable[[DeployedModel], dict] | None) -> dict:
    """One budget, ``ratio``: every candidate (``none``: the pruned model; else ``(model, sublayer records)``)
    scored on the CPU on validation and test; the best on validation exported and checked, its layout recorded (the
    timing stage's), and quantised to INT8 by ``quantized`` where given."""
    models = {name: (candidate if name == "none" else candidate[0]).cpu() for name, candidate in candidates.items()}
    scores = {name: {split: classification_metrics(*predict_logits(candidate, batches))
                     for split, batches in (("validation", validation_batches), ("test", quality_batches))}
              for name, candidate in models.items()}
    chosen = max(models, key=lambda name: scores[name]["validation"]["mcc"])  # the first of equals: none first
    pruned = models[chosen]
    record = {"mac_ratio": ratio, "removed_mac_fraction": selection.removed_fraction,
              "heads": count_heads(pruned), "ffn_neurons": count_neurons(pruned),
              "kept_heads": head_layout(pruned), "intermediate_sizes": ffn_layout(pruned),
              "parameters": count_parameters(pruned), "test_without_tuning": scores["none"]["test"],
              "reconstructions": {name: {**scores[name], **({} if name == "none" else {"sublayers": candidate[1]})}
                                  for name, candidate in candidates.items()},
              "chosen": chosen}
    deployed = DeployedModel(pruned, onnx_dir / onnx_name(ratio), quality_batches, threads)
    record["test"], record["onnx_max_abs_diff"] = deployed.metrics, deployed.onnx_difference
    if quantized is not None:
        record["int8"] = quantized(deployed)
    log.info("removed %.0f%% of MACs: %d heads, %d FFN neurons left; %s chosen on validation, test MCC %.4f",
             100 * selection.removed_fraction, record["heads"], record["ffn_neurons"], chosen, record["test"]["mcc"])
    return record
