"""``mcap_joint`` (not in the paper): head masks learned on the task loss of the model that will be fine-tuned, while
its weights adapt, as differentiable subset pruning does (Li et al. 2021). Unlike that method, the adapted weights are
then discarded: the pre-trained model is pruned with the learned ranking and fine-tuned like every other strategy.

Per meta-training task, a copy of the pre-trained model (its classifier head drawn from the controller seed) trains on
the task's pooled sentences at ``train.max_seq_len``, ``mcap.passes`` times over, in episodes of ``mcap.k`` sentences
(:func:`mcap.controller.episode_schedule`), with exact-budget Gumbel top-K head masks whose noise is annealed as
``mcap``'s. The loss of an episode is

    CE(classifier of the masked model) + kl_weight · RDD-KL(pre-trained vectors || masked model's vectors) / k

the paper's KL (Eq. 10–14, summed over the episode's k instances) divided by k, so that λ means the same whatever
``mcap.k``; it holds the adapting encoder near the pre-trained one whose heads are being ranked. The encoder and
classifier train with the fine-tuning's AdamW, first learning rate, weight decay and schedule. A task's head logits are
g(T, Φ), the paper's controller of the episode's task representation and head features (its own per-head logits
frozen at 0), plus logits indexed by the task that start at zero; the task logits train at ``mcap.lr``, g at
``mcap.conditional_lr``, one Adam step per episode. δ of a training task is the sigmoid of its logits; the stage keeps
g alone, so a task no controller trained on gets sigmoid(g(T, Φ)), as ``mcap``'s inference does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from mcap.controller import (
    ControllerSettings,
    MetaController,
    TaskPool,
    episode_schedule,
    head_budget_mask,
    mean_pooled,
    new_controller,
    noise_at,
    rdd_kl,
    sentence_representations,
)
from mcap.heads import masked_heads
from mcap.modeling import load_pretrained
from mcap.params import Section, TrainSettings
from mcap.training import optimizer_with_schedule


class JointSettings(Section):
    """params.yaml's ``mcap_joint`` section. It lives beside the strategy's code rather than in params.py, because
    every stage depends on params.py: a section added there would rerun every finished fine-tuning."""

    section: ClassVar[str] = "mcap_joint"
    kl_weight: float  # λ: weight of the per-instance RDD-KL to the pre-trained model beside the task's cross-entropy

    def check(self) -> None:
        self.require("kl_weight", self.kl_weight >= 0, "a number ≥ 0")


class JointController(nn.Module):
    """g(T, Φ) shared by the training tasks (:class:`MetaController`, its per-head logits frozen at 0) plus per-task
    head logits (tasks, layers, heads) that start at zero."""

    def __init__(self, shared: MetaController, tasks: list[str]):
        super().__init__()
        self.shared, self.tasks = shared, list(tasks)
        shared.head_logits.requires_grad_(False)  # the task logits take their place
        self.task_logits = nn.Parameter(torch.zeros(len(self.tasks), *shared.head_logits.shape,
                                                    device=shared.head_logits.device))

    def forward(self, task: str, representation: torch.Tensor, head_features: torch.Tensor) -> torch.Tensor:
        # representation: (d,); head_features: (layers, heads, F) -> centred logits (layers, heads)
        logits = self.shared(representation, head_features) + self.task_logits[self.tasks.index(task)]
        return logits - logits.mean()

    @torch.no_grad()
    def importance(self, task: str, pool: TaskPool) -> torch.Tensor:
        """δ (layers, heads) of a training task from all of its pooled instances."""
        return torch.sigmoid(self(task, pool.representations.mean(dim=0), pool.head_features.mean(dim=0)))


def padded(tokenizer, examples: list[dict], device: torch.device) -> dict[str, torch.Tensor]:
    """Encoded examples (:func:`mcap.training.encode`) as one batch padded to its longest, on ``device``."""
    return {name: tensor.to(device) for name, tensor in tokenizer.pad(examples, return_tensors="pt").items()}


@torch.no_grad()
def pretrained_vectors(model: nn.Module, tokenizer, examples: list[dict], batch_size: int = 32) -> torch.Tensor:
    """(N, d): the mean-pooled sentence vectors of ``model`` (frozen, in eval mode) for every example: the KL's
    reference, computed once."""
    device = next(model.parameters()).device
    parts = []
    for start in range(0, len(examples), batch_size):
        batch = padded(tokenizer, examples[start:start + batch_size], device)
        parts.append(sentence_representations(model, batch["input_ids"], batch["attention_mask"]))
    return torch.cat(parts)


def joint_episode_losses(model: nn.Module, controller: JointController, task: str, pool: TaskPool, index: torch.Tensor,
                         batch: dict[str, torch.Tensor], reference: torch.Tensor, settings: ControllerSettings,
                         kl_weight: float, noise_scale: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One episode's loss terms: ``batch`` holds the pool's sentences ``index`` (k,) at full length, ``reference``
    their pre-trained vectors (k, d); the mask is sampled from the task's logits for the episode."""
    logits = controller(task, pool.representations[index].mean(dim=0), pool.head_features[index].mean(dim=0))
    all_heads = torch.ones_like(logits, dtype=torch.bool)
    mask = head_budget_mask(logits, settings.ratio, all_heads, noise_scale, generator)  # (layers, heads)
    with masked_heads(model, mask):
        output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    cross_entropy = F.cross_entropy(output.logits, batch["labels"])
    kl = rdd_kl(reference, mean_pooled(output.hidden_states[-1], batch["attention_mask"])) / len(index)
    return {"total": cross_entropy + kl_weight * kl, "task": cross_entropy, "kl": kl}


def train_joint(name_or_path: str, tokenizer, pools: Mapping[str, TaskPool],
                examples: Mapping[str, list[dict]], settings: ControllerSettings, training: TrainSettings,
                kl_weight: float) -> tuple[MetaController, list[dict[str, float]], dict[str, torch.Tensor]]:
    """Learn the masks of every task of ``pools`` (``examples``: the same sentences encoded at full length, in the same
    order) with a copy per task of the pre-trained model ``name_or_path``, its classifier head drawn from the controller
    seed; return g, one record per episode and δ per task. The adapted copies are discarded."""
    tasks = list(pools)
    frozen = load_pretrained(name_or_path, settings.seed)[0].eval().requires_grad_(False)
    references = {task: pretrained_vectors(frozen, tokenizer, examples[task]) for task in tasks}
    models = {task: load_pretrained(name_or_path, settings.seed)[0].train() for task in tasks}
    torch.manual_seed(settings.seed)  # g's initialisation is the controller seed's
    rng = np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    controller = JointController(new_controller(frozen, pools, tasks, settings), tasks).train()
    schedule = episode_schedule({task: len(examples[task]) for task in tasks}, settings.k, settings.passes, rng)
    episodes = Counter(task for task, _ in schedule)
    optimizers = {task: optimizer_with_schedule(models[task], training.learning_rates[0], training, episodes[task])
                  for task in tasks}
    conditional = [parameter for parameter in controller.shared.parameters() if parameter.requires_grad]
    mask_optimizer = torch.optim.Adam([{"params": [controller.task_logits], "lr": settings.learning_rate},
                                       {"params": conditional, "lr": settings.conditional_learning_rate}])
    device = pools[tasks[0]].representations.device
    history = []
    for episode, (task, indices) in enumerate(tqdm(schedule, desc="joint mask episodes")):
        noise = noise_at(episode, len(schedule), settings)
        index = torch.as_tensor(indices, device=device)
        batch = padded(tokenizer, [examples[task][i] for i in indices], device)
        losses = joint_episode_losses(models[task], controller, task, pools[task], index, batch,
                                      references[task][index], settings, kl_weight, noise, generator)
        losses["total"].backward()
        optimizer, scheduler = optimizers[task]
        nn.utils.clip_grad_norm_(models[task].parameters(), 1.0)  # as the fine-tuning clips
        for step in (optimizer.step, scheduler.step, mask_optimizer.step):
            step()
        optimizer.zero_grad(set_to_none=True)
        mask_optimizer.zero_grad(set_to_none=True)
        history.append({"noise": noise, **{name: float(value.detach()) for name, value in losses.items()}})
    deltas = {task: controller.importance(task, pools[task]) for task in tasks}
    return controller.shared.eval(), history, deltas
