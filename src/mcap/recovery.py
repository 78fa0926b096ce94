"""Recovery of a model pruned after fine-tuning by a short retraining, a mode apart from the retraining-free one.

``distill``: knowledge distillation from the unpruned fine-tuned model (Hinton et al. 2015): the pruned model learns
the teacher's class distribution at temperature T on the task's train sentences,

    L = T² · KL(softmax(z_teacher / T) ‖ softmax(z_student / T)),

averaged over the batch; the T² keeps the gradient's scale as T changes. Logits only: the pruned model keeps the
teacher's layers, so hidden-state matching would add little that the logits do not already ask.

``cross_entropy``: the same pruned model, the same sentences, batches, steps and learning rate, on the labels. It is
there so that the gain of distillation over plain retraining is measured, not assumed.

Either runs at most one pass over the train sentences (Kwon et al.'s retraining-free method needs none), with AdamW
and the fine-tuning's warm-up and decay.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.data import DataLoader

from mcap.devices import autocast
from mcap.params import RECOVERIES, TrainSettings
from mcap.training import batches_on, optimizer_with_schedule


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(teacher ‖ student) of the logits (B, C) at temperature T, averaged over the batch."""
    teacher = nn.functional.log_softmax(teacher_logits.float() / temperature, dim=-1)
    student = nn.functional.log_softmax(student_logits.float() / temperature, dim=-1)
    return temperature ** 2 * nn.functional.kl_div(student, teacher, log_target=True, reduction="batchmean")


def recovered(pruned: nn.Module, teacher: nn.Module, loader: DataLoader, objective: str, learning_rate: float,
              temperature: float, settings: TrainSettings) -> tuple[nn.Module, list[float]]:
    """A copy of ``pruned`` trained for one pass over ``loader`` (shuffled train batches with labels) on
    ``objective`` (:data:`RECOVERIES`), on ``teacher``'s device; and the loss of every step."""
    if objective not in RECOVERIES:
        raise ValueError(f"unknown recovery {objective!r}; accepted: {list(RECOVERIES)}")
    device = next(teacher.parameters()).device
    student = copy.deepcopy(pruned).to(device).train()
    teacher.eval()
    optimizer, scheduler = optimizer_with_schedule(student, learning_rate, settings, steps=len(loader))
    losses = []
    for batch in batches_on(loader, device):
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        with autocast(device):
            logits = student(**inputs).logits  # (B, 2)
            if objective == "distill":
                with torch.no_grad():
                    target = teacher(**inputs).logits
                loss = distillation_loss(logits, target, temperature)
            else:
                loss = nn.functional.cross_entropy(logits.float(), batch["labels"])
        loss.backward()
        nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    return student.eval(), torch.stack(losses).tolist()
