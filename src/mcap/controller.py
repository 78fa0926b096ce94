"""The MCAP meta-controller (paper §II.E–F, Eq. 6–14, Algorithm 1). See docs/method.md.

One controller g(T, Φ) is trained jointly over the meta-training tasks. An *episode* is k
instances of one task. The controller maps the task representation T (mean sentence embedding
of the episode's instances in the original model) and per-head features (pattern-CNN features of
each head's attention maps on those instances) to one logit per head; δ = sigmoid(logit) is the
head importance (Eq. 6). The episode's mask keeps exactly the budget's ``K = heads −
floor(ratio × heads)`` heads: the top K of the Gumbel-perturbed logits (exploration noise
annealed over training), with a straight-through gradient (Eq. 2, 7). The frozen encoder is
masked, and the loss is

    Σ_n KL(RDD_original^n || RDD_masked^n)                    Eq. 10–14: relative cosine-distance distributions
  + task_weight · [CE(probe(masked vectors)) − CE(probe(original vectors))]   §II.E, Algorithm 1 line 7
  + cnn_weight  · mean over kept heads of P_CNN(vertical | masked model's map)

where the probe is a linear classifier fitted once on the *unpruned* model's sentence vectors
(pruning comes before fine-tuning). ``task_weight = 0`` is the label-free variant. Adam updates Φ
every ``update_every`` episodes; each pass shows every pooled training instance once. δ for a
task, seen in meta-training or not, is g applied to that task's representation and head
features: no training on it.

``mcap_iterative`` (not in the paper, :func:`train_iterative`) prunes in steps instead: g continues
training with each step's budget over the heads that survived the earlier steps, the probe is
refitted on the survivors (the task term then measures the loss added by this step's removal),
and the surviving heads with the lowest δ are removed before the next step.

``structured_mcap`` (not in the paper, :class:`StructuredMetaController`) gates groups of FFN neurons
beside the heads, to a budget of encoder MACs, with the same objective.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from mcap.budget import UnitCosts, neuron_groups, removed_lowest_first, unit_cost_vector
from mcap.errors import McapError
from mcap.ffn import masked_neurons
from mcap.heads import captured_attention, masked_heads, removed_head_count
from mcap.params import McapSettings
from mcap.patterns import VERTICAL, PatternCNN
from mcap.probe import TaskProbe


@dataclass(frozen=True)
class ControllerSettings:
    k: int  # instances per episode (paper: 60)
    passes: int  # passes over every meta-training task's pool (the paper: until every instance is seen)
    update_every: int  # episodes per optimiser step (paper: 8)
    learning_rate: float  # Adam, per-head logits
    conditional_learning_rate: float  # Adam, the network of task representation and head features
    task_weight: float  # 0: the label-free variant (KL + CNN only)
    cnn_weight: float
    noise_start: float  # scale of the Gumbel noise on the logits in the first episode ...
    noise_end: float  # ... and in the last (linear in between)
    cnn_instances: int  # instances of the episode whose masked maps the CNN term scores
    ratio: float  # a ratio of prune.ratios: the budget (of heads; of encoder MACs with neuron groups)
    seed: int
    neuron_group_size: int | None = None  # gate FFN neurons too, in groups of this many (None: heads only)
    mac_seq_len: int | None = None  # with neuron groups: the length the MACs are counted at

    @classmethod
    def of(cls, mcap: McapSettings, ratio: float, seed: int, iterative: bool = False,
           mac_seq_len: int | None = None) -> ControllerSettings:
        """The settings of one controller run: ``mcap.*``, the budget and the controller seed (``mcap_iterative``
        trains ``mcap.iterative_passes`` passes per step instead of ``mcap.passes``). With ``mac_seq_len`` the
        controller gates heads and groups of ``mcap.neuron_group_size`` FFN neurons to a MAC budget."""
        structured = mac_seq_len is not None
        return cls(k=mcap.k, passes=mcap.iterative_passes if iterative else mcap.passes, update_every=mcap.update_every,
                   learning_rate=mcap.lr, conditional_learning_rate=mcap.conditional_lr, task_weight=mcap.task_weight,
                   cnn_weight=mcap.cnn_weight, noise_start=mcap.noise_start, noise_end=mcap.noise_end,
                   cnn_instances=mcap.cnn_instances, ratio=ratio, seed=seed,
                   neuron_group_size=mcap.neuron_group_size if structured else None, mac_seq_len=mac_seq_len)


@dataclass
class PruningState:
    """Per task, the model the controller prunes from: the heads that survive and the task probe fitted on them.

    For ``mcap`` every head survives and the probe is the unpruned model's; ``mcap_iterative``
    removes heads step by step and refits the probe on the survivors after each step.
    """

    surviving: torch.Tensor  # (layers, heads) bool
    probe: TaskProbe | None  # None: no task term
    representations: torch.Tensor  # (N, d) the surviving model's sentence vectors: the task term's baseline


@dataclass
class TaskPool:
    """One task's instances with everything precomputed in the original model."""

    input_ids: torch.Tensor  # (N, S)
    attention_mask: torch.Tensor  # (N, S)
    representations: torch.Tensor  # (N, d) original sentence embeddings
    head_features: torch.Tensor  # (N, layers, heads, F) pattern-CNN features of each head's map
    labels: torch.Tensor  # (N,) task labels (used only by the task-loss term)


# --------------------------------------------------------------------------------------------
# Eq. 10–14: relative distance distributions and their KL divergence
# --------------------------------------------------------------------------------------------


def relative_distance_distribution(representations: torch.Tensor) -> torch.Tensor:
    """Eq. 10–11: row n is r^n_i = D(h_n, h_i) / Σ_j D(h_n, h_j) over i ≠ n, D = 1 − cosine similarity.

    (k, d) -> (k, k−1). The self-distance (always 0) is left out so that every entry can be logged.
    """
    normalised = F.normalize(representations, dim=-1)
    distance = (1 - normalised @ normalised.T).clamp_min(1e-8)  # (k, k)
    k = distance.shape[0]
    off_diagonal = distance.masked_select(~torch.eye(k, dtype=torch.bool, device=distance.device)).view(k, k - 1)
    return off_diagonal / off_diagonal.sum(dim=-1, keepdim=True)


def rdd_kl(original: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    """Eq. 12–14: KL(r_original^n || r_pruned^n) summed over the episode's instances n (§II.F: "the summation
    over all instances X in the set of instances")."""
    p, q = relative_distance_distribution(original), relative_distance_distribution(pruned)
    return (p * (p.log() - q.log())).sum()


def sentence_representations(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean-pooled last hidden states over real tokens: (B, S) -> (B, d)."""
    return mean_pooled(model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state,
                       attention_mask)


def mean_pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of ``hidden`` (B, S, d) over the real tokens of ``attention_mask`` (B, S): (B, d)."""
    weights = attention_mask[..., None].to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1)


# --------------------------------------------------------------------------------------------
# g(T, Φ)
# --------------------------------------------------------------------------------------------


class MetaController(nn.Module):
    """Feed-forward g(T, Φ) -> (layers, heads) logits (Eq. 6–7).

    A head's logit is a learned per-head logit plus a shared two-layer MLP of the projected task
    representation, the head's projected CNN features and a learned embedding of its position
    (layer, head). The MLP's output layer starts at zero, so every head starts with the same
    logit: the ranking comes from the objective, not from the initialisation. Logits are centred
    over heads, because an exact budget keeps the same heads whatever their common shift.
    """

    def __init__(self, hidden_size: int, feature_size: int, layers: int, heads: int, width: int = 64):
        super().__init__()
        self.task_projection = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, width))
        self.feature_projection = nn.Sequential(nn.LayerNorm(feature_size), nn.Linear(feature_size, width))
        self.position = nn.Parameter(torch.zeros(layers, heads, width))
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))
        self.head_logits = nn.Parameter(torch.zeros(layers, heads))
        with torch.no_grad():
            self.mlp[-1].weight.zero_()
            self.mlp[-1].bias.zero_()

    def forward(self, task: torch.Tensor, head_features: torch.Tensor) -> torch.Tensor:
        # task: (d,); head_features: (layers, heads, F) -> logits (layers, heads)
        logits = self.uncentred_logits(task, head_features)
        return logits - logits.mean()  # a shift of every logit changes no mask of an exact budget

    def uncentred_logits(self, task: torch.Tensor, head_features: torch.Tensor) -> torch.Tensor:
        """The logits before centring (layers, heads): their common level is free, and the caller removes it."""
        hidden = self.task_projection(task)[None, None] + self.feature_projection(head_features) + self.position
        return self.mlp(hidden).squeeze(-1) + self.head_logits

    def unit_logit_parameters(self) -> list[nn.Parameter]:
        """The per-unit logits (Adam at ``mcap.lr``; the rest of g at ``mcap.conditional_lr``)."""
        return [self.head_logits]

    def sample_masks(self, task: torch.Tensor, head_features: torch.Tensor, ratio: float, surviving: torch.Tensor,
                     noise_scale: float, generator: torch.Generator) -> UnitMasks:
        """An episode's masks: the budget's heads by :func:`exact_budget_mask`."""
        return UnitMasks(head_budget_mask(self(task, head_features), ratio, surviving, noise_scale, generator))

    @torch.no_grad()
    def importance(self, pool: TaskPool) -> torch.Tensor:
        """δ (layers, heads) for a task from all of its pooled instances — no training on the task."""
        return torch.sigmoid(self(pool.representations.mean(dim=0), pool.head_features.mean(dim=0)))


@dataclass
class UnitMasks:
    """An episode's masks on the frozen encoder: 0/1 forward, straight-through gradient backward."""

    heads: torch.Tensor  # (layers, heads)
    neurons: list[torch.Tensor] | None = None  # per layer (I,); None: the FFNs are left whole

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        with masked_heads(model, self.heads):
            if self.neurons is None:
                yield
            else:
                with masked_neurons(model, self.neurons):
                    yield


class StructuredMetaController(nn.Module):
    """g(T, Φ) over heads and groups of FFN neurons (``structured_mcap``, not in the paper): a budget of MACs.

    Heads get their logits from a :class:`MetaController`. A neuron group has no attention map, so its logit
    is that controller's MLP applied to the projected task representation plus a learned embedding of the
    group's position (layer, group), plus a learned per-group logit; like the heads', it starts at zero. All the
    logits, heads' and groups' together, are centred over the units: keeping any unit lowers the loss, so the
    straight-through gradient pushes every logit up, and a level left free for one kind of unit alone (centring
    the heads only) climbs without bound and puts every unit of the other kind first in the removal order. The
    mask removes units in increasing perturbed logit, each whose MACs still fit in the budget
    (:func:`mcap.budget.removed_lowest_first`), the rule :func:`mcap.structured.select_groups` applies to δ when
    pruning.
    """

    def __init__(self, hidden_size: int, feature_size: int, layers: int, heads: int, ffn_width: int, group_size: int,
                 costs: UnitCosts, width: int = 64):
        super().__init__()
        self.heads = MetaController(hidden_size, feature_size, layers, heads, width)
        self.groups = neuron_groups(ffn_width, group_size)
        self.group_position = nn.Parameter(torch.zeros(layers, len(self.groups), width))
        self.group_logits = nn.Parameter(torch.zeros(layers, len(self.groups)))
        self.register_buffer("cost", unit_cost_vector(costs, layers, heads, ffn_width, group_size), persistent=False)
        self.register_buffer("group_lengths", torch.tensor([len(group) for group in self.groups]), persistent=False)

    def forward(self, task: torch.Tensor, head_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # task: (d,); head_features: (layers, heads, F) -> logits of heads (layers, heads) and groups (layers, G)
        hidden = self.heads.task_projection(task)[None, None] + self.group_position  # (layers, G, width)
        head_logits = self.heads.uncentred_logits(task, head_features)
        group_logits = self.heads.mlp(hidden).squeeze(-1) + self.group_logits
        level = torch.cat([head_logits.flatten(), group_logits.flatten()]).mean()
        return head_logits - level, group_logits - level

    def unit_logit_parameters(self) -> list[nn.Parameter]:
        return [self.heads.head_logits, self.group_logits]

    def sample_masks(self, task: torch.Tensor, head_features: torch.Tensor, ratio: float, surviving: torch.Tensor,
                     noise_scale: float, generator: torch.Generator) -> UnitMasks:
        """An episode's masks of heads and neurons (each group's value repeated over its neurons), straight-through."""
        if not surviving.all():
            raise McapError("the structured meta-controller prunes the unpruned model only (no iterative variant)")
        head_logits, group_logits = self(task, head_features)
        logits = torch.cat([head_logits.flatten(), group_logits.flatten()])  # (units,)
        perturbed = logits.detach() + noise_scale * gumbel_noise(logits, generator)
        removed = removed_lowest_first(perturbed, self.cost, ratio)
        mask = (~removed).float() + (logits - logits.detach())  # 0/1 forward, identity backward
        head_count = head_logits.numel()
        groups = mask[head_count:].view_as(group_logits)  # (layers, G)
        return UnitMasks(mask[:head_count].view_as(head_logits),
                         [layer.repeat_interleave(self.group_lengths) for layer in groups])

    @torch.no_grad()
    def importance(self, pool: TaskPool) -> tuple[torch.Tensor, torch.Tensor]:
        """The scores of the heads (layers, heads) and of the neuron groups (layers, G) for a task — no training on
        it: their logits, whose sigmoid is δ. Not δ itself: a logit far from 0 rounds its δ to 0 or 1 in float32,
        a tie the order must not have."""
        return self(pool.representations.mean(dim=0), pool.head_features.mean(dim=0))


Controller = MetaController | StructuredMetaController


def gumbel_noise(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard Gumbel samples of ``like``'s shape on its device, drawn on the CPU from ``generator`` (the same
    samples on every device)."""
    uniform = torch.rand(like.shape, generator=generator, device="cpu").clamp(1e-10, 1 - 1e-10)
    return (-torch.log(-torch.log(uniform))).to(like.device)


def exact_budget_mask(logits: torch.Tensor, keep: int, noise_scale: float, generator: torch.Generator,
                      surviving: torch.Tensor) -> torch.Tensor:
    """Hard 0/1 mask of the ``keep`` surviving heads with the largest Gumbel-perturbed logits; straight-through gradient.

    Every sample keeps exactly the budget, so no penalty has to hold the kept fraction against the
    other terms. The backward pass hands each surviving head's logit the gradient of its mask value:
    the first-order change of the loss when that head is switched on, for kept and dropped heads
    alike. ``surviving`` (layers, heads, bool) excludes heads already removed: never kept, no gradient.
    """
    perturbed = logits.detach() + noise_scale * gumbel_noise(logits, generator)  # (layers, heads)
    perturbed = perturbed.masked_fill(~surviving, float("-inf"))
    hard = torch.zeros(logits.numel(), device=logits.device)
    hard[perturbed.flatten().topk(keep).indices] = 1.0
    straight_through = (logits - logits.detach()) * surviving  # 0 forward, identity backward (surviving heads)
    return hard.view_as(logits) + straight_through


def head_budget_mask(logits: torch.Tensor, ratio: float, surviving: torch.Tensor, noise_scale: float,
                     generator: torch.Generator) -> torch.Tensor:
    """:func:`exact_budget_mask` of (layers, heads) ``logits``, keeping the heads that ``ratio`` of all heads leaves."""
    keep = logits.numel() - removed_head_count(ratio, logits.numel())
    return exact_budget_mask(logits, keep, noise_scale, generator, surviving)


def vertical_penalty(cnn: PatternCNN, layer_maps: dict[int, torch.Tensor], attention_mask: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """The CNN's mean P(vertical) over the heads the mask keeps, on the masked model's maps.

    Vertical heads attend to [CLS]/[SEP] whatever the input (Kovaleva et al.'s uninformative pattern).
    """
    rows = attention_mask[:, None, :, None].to(mask.dtype)  # (B, 1, S, 1): zero padded query rows
    per_layer = []
    for layer in range(mask.shape[0]):
        maps = layer_maps[layer] * rows  # (B, H, S, S)
        probabilities = cnn(maps.flatten(0, 1)).softmax(-1)[:, VERTICAL]  # (B*H,)
        per_layer.append(probabilities.view(maps.shape[0], maps.shape[1]).mean(dim=0))  # (H,)
    vertical = torch.stack(per_layer)  # (layers, heads)
    return (mask * vertical).sum() / mask.sum().clamp_min(1)


# --------------------------------------------------------------------------------------------
# Training (Algorithm 1)
# --------------------------------------------------------------------------------------------


def episode_losses(model: nn.Module, cnn: PatternCNN, controller: MetaController, pool: TaskPool, state: PruningState,
                   indices: np.ndarray, settings: ControllerSettings, noise_scale: float,
                   generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The loss terms of one episode on ``indices`` of one task's pool, pruning from ``state``."""
    index = torch.as_tensor(indices, device=pool.input_ids.device)
    masks = controller.sample_masks(pool.representations[index].mean(dim=0), pool.head_features[index].mean(dim=0),
                                    settings.ratio, state.surviving, noise_scale, generator)
    input_ids, attention_mask = pool.input_ids[index], pool.attention_mask[index]
    with masks.applied(model), captured_attention(model) as layer_maps:
        pruned = sentence_representations(model, input_ids, attention_mask)  # (k, d)
    kl = rdd_kl(pool.representations[index], pruned)
    task = kl.new_zeros(())
    if state.probe is not None:  # the increase over the surviving model's loss: 0 without pruning, like the KL
        labels = pool.labels[index]
        task = F.cross_entropy(state.probe(pruned), labels) - F.cross_entropy(state.probe(state.representations[index]), labels)
    scored = settings.cnn_instances  # the CNN term looks at the first few instances only (cost)
    vertical = vertical_penalty(cnn, {layer: maps[:scored] for layer, maps in layer_maps.items()},
                                attention_mask[:scored], masks.heads)
    total = kl + settings.task_weight * task + settings.cnn_weight * vertical
    return {"total": total, "kl": kl, "task": task, "vertical": vertical}


def episode_schedule(pool_sizes: Mapping[str, int], k: int, passes: int, rng: np.random.Generator) -> list[tuple[str, np.ndarray]]:
    """Episodes of about ``k`` instances of one task, ``passes`` times over every instance of every task.

    Each pass splits every task's shuffled pool into ``ceil(N / k)`` near-equal episodes (never a
    one-instance episode, whose distance distribution is empty) and shuffles them across tasks.
    """
    schedule = []
    for _ in range(passes):
        one_pass = [(task, part) for task, size in pool_sizes.items()
                    for part in np.array_split(rng.permutation(size), -(-size // k))]
        schedule += [one_pass[i] for i in rng.permutation(len(one_pass))]
    return schedule


def noise_at(episode: int, episodes: int, settings: ControllerSettings) -> float:
    """Exploration noise, annealed linearly from ``noise_start`` to ``noise_end``."""
    progress = episode / max(episodes - 1, 1)
    return settings.noise_start + progress * (settings.noise_end - settings.noise_start)


def new_controller(model: nn.Module, pools: Mapping[str, TaskPool], train_tasks: list[str],
                   settings: ControllerSettings) -> Controller:
    """An untrained g for ``model`` (its layers and heads, and FFN widths if ``settings.neuron_group_size``) and the
    pools' CNN features, where the pools are; initialised on the CPU, so that every device starts from the same g."""
    first = pools[train_tasks[0]]
    layers, heads, features = first.head_features.shape[1:]
    with torch.device("cpu"):
        if settings.neuron_group_size is None:
            controller = MetaController(first.representations.shape[1], features, layers, heads)
        else:
            controller = StructuredMetaController(first.representations.shape[1], features, layers, heads,
                                                  model.config.intermediate_size, settings.neuron_group_size,
                                                  UnitCosts.of(model.config, settings.mac_seq_len))
    return controller.to(first.representations.device)


def train_controller(model: nn.Module, cnn: PatternCNN, pools: Mapping[str, TaskPool], states: Mapping[str, PruningState],
                     train_tasks: list[str], settings: ControllerSettings,
                     controller: Controller | None = None) -> tuple[Controller, list[dict[str, float]]]:
    """Meta-train g on episodes of ``train_tasks``, each pruning from its task's ``states`` entry; return g and one
    record per optimiser step. ``controller`` continues training an existing g (None: a new one)."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    model.eval().requires_grad_(False)  # the encoder is frozen: only Φ learns
    cnn.eval().requires_grad_(False)
    if controller is None:  # built once torch is seeded: its initialisation is the seed's
        controller = new_controller(model, pools, train_tasks, settings)
    controller.train()
    unit_logits = controller.unit_logit_parameters()
    conditional = [parameter for parameter in controller.parameters() if all(parameter is not u for u in unit_logits)]
    optimizer = torch.optim.Adam([{"params": unit_logits, "lr": settings.learning_rate},
                                  {"params": conditional, "lr": settings.conditional_learning_rate}])
    schedule = episode_schedule({task: len(pools[task].input_ids) for task in train_tasks}, settings.k, settings.passes, rng)
    history, window = [], []
    for episode, (task, indices) in enumerate(tqdm(schedule, desc="meta-controller episodes")):
        noise = noise_at(episode, len(schedule), settings)
        losses = episode_losses(model, cnn, controller, pools[task], states[task], indices, settings, noise, generator)
        (losses["total"] / settings.update_every).backward()
        window.append({"noise": noise, **{name: float(value.detach()) for name, value in losses.items()}})
        if (episode + 1) % settings.update_every == 0 or episode + 1 == len(schedule):
            optimizer.step()
            optimizer.zero_grad()
            history.append({name: float(np.mean([w[name] for w in window])) for name in window[0]})
            window = []
    return controller.eval(), history


def unpruned_states(pools: Mapping[str, TaskPool], probes: Mapping[str, TaskProbe], task_weight: float) -> dict[str, PruningState]:
    """``mcap``'s starting point for every task of ``probes``: all heads, the unpruned model's probe (none at task_weight 0)."""
    return {task: PruningState(torch.ones(pools[task].head_features.shape[1:3], dtype=torch.bool,
                                          device=pools[task].head_features.device),
                               probe if task_weight else None, pools[task].representations)
            for task, probe in probes.items()}


# --------------------------------------------------------------------------------------------
# mcap_iterative: re-fit the controller on the surviving heads, a step of heads at a time
# --------------------------------------------------------------------------------------------


def step_ratios(ratio: float, step: float) -> list[float]:
    """The budgets of the iterative steps: step, 2·step, … below ``ratio``, then ``ratio`` itself."""
    count = int(np.ceil(round(ratio / step, 9)))
    return [round(step * number, 9) for number in range(1, count)] + [ratio]


@torch.no_grad()
def surviving_state(model: nn.Module, pool: TaskPool, surviving: torch.Tensor, with_probe: bool,
                    batch_size: int = 32) -> PruningState:
    """The surviving model's sentence vectors on ``pool`` and, if ``with_probe``, a probe refitted on them."""
    with masked_heads(model, surviving.float()):
        vectors = torch.cat([sentence_representations(model, pool.input_ids[start:start + batch_size],
                                                      pool.attention_mask[start:start + batch_size])
                             for start in range(0, len(pool.input_ids), batch_size)])
    probe = TaskProbe.fit(vectors, pool.labels) if with_probe else None
    return PruningState(surviving, probe, vectors)


def remove_step(delta: torch.Tensor, surviving: torch.Tensor, scores: torch.Tensor, ratio: float, number: int) -> None:
    """Step ``number`` of iterative pruning, in place: the surviving heads with the lowest δ (layers, heads) are
    removed up to the step's budget ``ratio``, each scored ``number`` + its δ."""
    removed = removed_head_count(ratio, delta.numel()) - int((~surviving).sum())
    candidates = delta.masked_fill(~surviving, float("inf")).flatten()
    newly = torch.argsort(candidates, stable=True)[:removed]
    scores.view(-1)[newly] = number + delta.flatten()[newly]
    surviving.view(-1)[newly] = False


def with_survivors(scores: torch.Tensor, surviving: torch.Tensor, final_delta: torch.Tensor, steps: int) -> torch.Tensor:
    """Removal scores completed: a head no step removed scores the number of steps plus its δ at the last step."""
    return torch.where(surviving, steps + final_delta, scores)


def removal_scores(step_controllers: list[Controller], pool: TaskPool, ratios: list[float]) -> torch.Tensor:
    """A task's removal scores (layers, heads) from the controller of each step of :func:`train_iterative` (as it
    left each step): its steps replayed on the task, e.g. one that meta-training never saw."""
    shape, device = pool.head_features.shape[1:3], pool.head_features.device
    surviving, scores = torch.ones(shape, dtype=torch.bool, device=device), torch.zeros(shape, device=device)
    for number, (controller, ratio) in enumerate(zip(step_controllers, ratios, strict=True)):
        delta = controller.importance(pool)
        remove_step(delta, surviving, scores, ratio, number)
    return with_survivors(scores, surviving, delta, len(ratios))


def train_iterative(model: nn.Module, cnn: PatternCNN, pools: Mapping[str, TaskPool], train_tasks: list[str],
                    settings: ControllerSettings, step: float
                    ) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, float]], dict[str, torch.Tensor]]:
    """Prune towards ``settings.ratio`` in steps of ``step``; return g's weights after each step, its history and
    each task's removal scores.

    At each step g continues training (``settings.passes`` passes) with the budget of that step,
    pruning from the heads that survived the earlier steps, with each training task's probe refitted
    on the survivors. Then, for every task of ``pools`` (seen in meta-training or not), the surviving
    heads with the lowest δ are removed up to the step's budget. A head's score is the step that
    removed it plus its δ then (survivors: the number of steps plus their final δ), so the
    ``floor(ratio × heads)`` lowest scores are exactly the heads removed, in removal order. The weights
    of each step give another task's scores by :func:`removal_scores`.
    """
    ratios = step_ratios(settings.ratio, step)
    shape = next(iter(pools.values())).head_features.shape[1:3]
    device = next(iter(pools.values())).head_features.device
    surviving = {task: torch.ones(shape, dtype=torch.bool, device=device) for task in pools}
    scores = {task: torch.zeros(shape, device=device) for task in pools}
    controller, history, steps = None, [], []
    for number, ratio in enumerate(ratios):
        states = {task: surviving_state(model, pools[task], surviving[task], settings.task_weight != 0) for task in train_tasks}
        # A seed per step, so that the steps do not replay one another's episode order and noise.
        step_settings = replace(settings, ratio=ratio, seed=settings.seed + 10_000 * number)
        controller, step_history = train_controller(model, cnn, pools, states, train_tasks, step_settings, controller)
        history += [{**record, "ratio": ratio} for record in step_history]
        steps.append({name: tensor.detach().clone() for name, tensor in controller.state_dict().items()})
        deltas = {task: controller.importance(pool) for task, pool in pools.items()}
        for task, delta in deltas.items():
            remove_step(delta, surviving[task], scores[task], ratio, number)
    scores = {task: with_survivors(scores[task], surviving[task], deltas[task], len(ratios)) for task in pools}
    return steps, history, scores


@torch.no_grad()
def build_pool(model: nn.Module, cnn: PatternCNN, arrays: dict[str, np.ndarray], labels: np.ndarray,
               batch_size: int = 32) -> TaskPool:
    """Precompute original representations and per-head CNN features ([features ; pattern probabilities]), on the
    model's device (``cnn`` must be there too): the pool is what every episode reads."""
    device = next(model.parameters()).device
    input_ids = torch.as_tensor(arrays["input_ids"], device=device).long()
    attention_mask = torch.as_tensor(arrays["attention_mask"], device=device).long()
    maps = torch.as_tensor(arrays["maps"], device="cpu")  # (N, layers, heads, S, S) float16: moved a batch at a time
    representations, features = [], []
    model.eval()
    for start in range(0, len(input_ids), batch_size):
        part = slice(start, start + batch_size)
        representations.append(sentence_representations(model, input_ids[part], attention_mask[part]))
        batch_maps = maps[part].to(device).float()
        flat = batch_maps.flatten(0, 2)  # (B*layers*heads, S, S)
        pooled = cnn.features(flat)
        head = torch.cat([pooled, cnn.classifier(pooled).softmax(-1)], dim=-1)
        features.append(head.view(*batch_maps.shape[:3], -1))
    return TaskPool(input_ids, attention_mask, torch.cat(representations), torch.cat(features),
                    torch.tensor(labels, dtype=torch.long, device=device))


# --------------------------------------------------------------------------------------------
# Did it learn? (reports/mcap/controller/diagnostics.json)
# --------------------------------------------------------------------------------------------


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


def objective_change(history: list[dict[str, float]]) -> dict[str, float]:
    """Mean total objective over the first and the last 10% of optimiser steps (at least one each)."""
    tenth = max(len(history) // 10, 1)
    start = float(np.mean([h["total"] for h in history[:tenth]]))
    end = float(np.mean([h["total"] for h in history[-tenth:]]))
    return {"objective_start": start, "objective_end": end, "objective_end_over_start": end / start}


def spread(delta: np.ndarray) -> dict[str, float]:
    """δ's std over heads and the median gap between consecutive sorted δ (a tie-break has std ≈ gap)."""
    gap = float(np.median(np.diff(np.sort(np.ravel(delta)))))
    std = float(np.std(delta))
    return {"delta_std": std, "median_gap": gap, "std_over_median_gap": std / gap if gap > 0 else float("inf")}


def controller_diagnostics(histories: Mapping[int, list[dict[str, float]]], deltas: Mapping[int, Mapping[str, np.ndarray]],
                           seed: int, train_tasks: list[str]) -> dict:
    """Evidence that the controller learned, for ``seed``'s controller and across all controller seeds.

    ``deltas[seed][task]`` is δ (layers, heads). (Its agreement with other strategies' head scores is the ranking
    stage's: :func:`mcap.ranking.reference_agreement`.)
    """
    tasks = list(deltas[seed])
    seed_pairs = list(itertools.combinations(sorted(deltas), 2))
    by_seed = {task: {f"{a}~{b}": spearman(deltas[a][task], deltas[b][task]) for a, b in seed_pairs} for task in train_tasks}
    return {
        "seed": seed,
        **objective_change(histories[seed]),
        **{key: min(spread(deltas[seed][task])[key] for task in train_tasks) for key in ("delta_std", "std_over_median_gap")},
        "median_gap": max(spread(deltas[seed][task])["median_gap"] for task in train_tasks),
        "seed_spearman_min": min((value for pairs in by_seed.values() for value in pairs.values()), default=None),
        "seed_spearman": by_seed,
        "task_spearman": {f"{a}~{b}": spearman(deltas[seed][a], deltas[seed][b]) for a, b in itertools.combinations(tasks, 2)},
        "per_seed": {str(s): {**objective_change(histories[s]), **{task: spread(deltas[s][task]) for task in train_tasks}}
                     for s in sorted(histories)},
    }


def iterative_diagnostics(histories: Mapping[int, list[dict[str, float]]], scores: Mapping[int, Mapping[str, np.ndarray]],
                          seed: int, train_tasks: list[str]) -> dict:
    """:func:`controller_diagnostics` for ``mcap_iterative``'s removal scores, with the objective per step.

    The budget grows from step to step, so one start/end over all steps would compare different
    budgets, and the scores' spread is set by the step offsets: both are left out. The Spearman
    agreements compare removal orders.
    """
    report = controller_diagnostics(histories, scores, seed, train_tasks)
    for key in ("objective_start", "objective_end", "objective_end_over_start", "delta_std", "std_over_median_gap",
                "median_gap", "per_seed"):
        report.pop(key)

    def steps(history: list[dict[str, float]]) -> list[dict[str, float]]:
        ratios = list(dict.fromkeys(record["ratio"] for record in history))
        return [{"ratio": ratio, **objective_change([h for h in history if h["ratio"] == ratio])} for ratio in ratios]

    report["steps"] = steps(histories[seed])
    report["objective_end_over_start_max"] = max(
        step["objective_end_over_start"] for history in histories.values() for step in steps(history))
    report["per_seed_steps"] = {str(s): steps(histories[s]) for s in sorted(histories)}
    return report
