"""The MCAP meta-controller (paper §II.E–F, Eq. 6–14, Algorithm 1). See docs/method.md.

One controller g(T, Φ) is trained jointly over the meta-training tasks. An *episode* samples a
task and k of its instances. The controller maps the task representation T (mean sentence
embedding of the k instances in the original model) and per-head features (pattern-CNN
features of each head's attention maps on those instances) to one logit per head; δ =
sigmoid(logit) is the head importance (Eq. 6). A hard Gumbel-softmax sample of keep/drop per
head (straight-through gradient) masks the frozen pre-trained encoder (Eq. 2, 7). The loss is

    Σ_n KL(RDD_original^n || RDD_masked^n)              Eq. 10–14: relative cosine-distance distributions
  + cnn_weight   · mean over kept heads of P_CNN(vertical | masked model's map)   Algorithm 1 line 7
  + budget_weight · (mean δ − (1 − prune.ratio))²       holds the expected kept fraction at the budget

and Φ is updated by SGD every ``update_every`` episodes. δ for a task — seen in meta-training or
not — is g applied to that task's representation and head features: no training on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from mcap.heads import captured_attention, masked_heads
from mcap.patterns import VERTICAL, PatternCNN


@dataclass(frozen=True)
class ControllerSettings:
    k: int  # instances per episode (paper: 60)
    episodes: int
    update_every: int  # episodes per SGD step (paper: 8)
    learning_rate: float
    cnn_weight: float
    budget_weight: float
    gumbel_tau: float
    cnn_instances: int  # instances of the episode whose masked maps the CNN term scores
    ratio: float  # prune.ratio: the budget
    seed: int


@dataclass
class TaskPool:
    """One task's instances with everything precomputed in the original model."""

    input_ids: torch.Tensor  # (N, S)
    attention_mask: torch.Tensor  # (N, S)
    representations: torch.Tensor  # (N, d) original sentence embeddings
    head_features: torch.Tensor  # (N, layers, heads, F) pattern-CNN features of each head's map


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
    hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, S, d)
    weights = attention_mask[..., None].to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1)


# --------------------------------------------------------------------------------------------
# g(T, Φ)
# --------------------------------------------------------------------------------------------


class MetaController(nn.Module):
    """Feed-forward g(T, Φ) -> (layers, heads) logits, shared across heads (Eq. 6–7).

    Each head's input is the projected task representation plus its projected CNN features plus
    a learned embedding of its position (layer, head); a two-layer MLP turns that into a logit.
    """

    def __init__(self, hidden_size: int, feature_size: int, layers: int, heads: int, keep_fraction: float, width: int = 64):
        super().__init__()
        self.task_projection = nn.Linear(hidden_size, width)
        self.feature_projection = nn.Linear(feature_size, width)
        self.position = nn.Parameter(torch.zeros(layers, heads, width))
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))
        with torch.no_grad():  # start at δ ≈ the kept fraction the budget asks for
            self.mlp[-1].bias.fill_(math.log(keep_fraction / (1 - keep_fraction)))

    def forward(self, task: torch.Tensor, head_features: torch.Tensor) -> torch.Tensor:
        # task: (d,); head_features: (layers, heads, F) -> logits (layers, heads)
        hidden = self.task_projection(task)[None, None] + self.feature_projection(head_features) + self.position
        return self.mlp(hidden).squeeze(-1)


def gumbel_keep_mask(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Hard 0/1 keep mask sampled with P(keep) = sigmoid(logit); straight-through gradient."""
    two_class = torch.stack([logits, torch.zeros_like(logits)], dim=-1)  # (layers, heads, [keep, drop])
    return F.gumbel_softmax(two_class, tau=tau, hard=True)[..., 0]


def vertical_penalty(cnn: PatternCNN, layer_maps: dict[int, torch.Tensor], attention_mask: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """Algorithm 1 line 7: the CNN's mean P(vertical) over the heads the mask keeps, on the masked model's maps.

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


def episode_losses(model: nn.Module, cnn: PatternCNN, controller: MetaController, pool: TaskPool,
                   indices: np.ndarray, settings: ControllerSettings) -> dict[str, torch.Tensor]:
    """The three loss terms of one episode on ``indices`` of one task's pool, and the δ it produced."""
    index = torch.as_tensor(indices)
    task = pool.representations[index].mean(dim=0)
    logits = controller(task, pool.head_features[index].mean(dim=0))
    delta = torch.sigmoid(logits)  # Eq. 6
    mask = gumbel_keep_mask(logits, settings.gumbel_tau)
    input_ids, attention_mask = pool.input_ids[index], pool.attention_mask[index]
    with masked_heads(model, mask), captured_attention(model) as layer_maps:
        pruned = sentence_representations(model, input_ids, attention_mask)
    kl = rdd_kl(pool.representations[index], pruned)
    scored = settings.cnn_instances  # the CNN term looks at the first few instances only (cost)
    vertical = vertical_penalty(cnn, {layer: maps[:scored] for layer, maps in layer_maps.items()},
                                attention_mask[:scored], mask)
    budget = (delta.mean() - (1 - settings.ratio)) ** 2
    total = kl + settings.cnn_weight * vertical + settings.budget_weight * budget
    return {"total": total, "kl": kl, "vertical": vertical, "budget": budget, "kept_fraction": delta.mean()}


def train_controller(model: nn.Module, cnn: PatternCNN, pools: dict[str, TaskPool], train_tasks: list[str],
                     settings: ControllerSettings) -> tuple[MetaController, list[dict[str, float]]]:
    """Meta-train g on episodes drawn from ``train_tasks``; return it and one record per SGD update."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model.eval().requires_grad_(False)  # the encoder is frozen: only Φ learns
    cnn.eval().requires_grad_(False)
    first = pools[train_tasks[0]]
    layers, heads, features = first.head_features.shape[1:]
    controller = MetaController(first.representations.shape[1], features, layers, heads, 1 - settings.ratio)
    optimizer = torch.optim.SGD(controller.parameters(), lr=settings.learning_rate, momentum=0.9)
    history, window = [], []
    for episode in tqdm(range(settings.episodes), desc="meta-controller episodes"):
        pool = pools[train_tasks[int(rng.integers(len(train_tasks)))]]
        indices = rng.choice(len(pool.input_ids), size=min(settings.k, len(pool.input_ids)), replace=False)
        losses = episode_losses(model, cnn, controller, pool, indices, settings)
        (losses["total"] / settings.update_every).backward()
        window.append({name: float(value.detach()) for name, value in losses.items()})
        if (episode + 1) % settings.update_every == 0 or episode + 1 == settings.episodes:
            optimizer.step()
            optimizer.zero_grad()
            history.append({name: float(np.mean([w[name] for w in window])) for name in window[0]})
            window = []
    return controller.eval(), history


@torch.no_grad()
def head_importance(controller: MetaController, pool: TaskPool) -> torch.Tensor:
    """δ (layers, heads) for a task from all of its pooled instances — no training on the task."""
    return torch.sigmoid(controller(pool.representations.mean(dim=0), pool.head_features.mean(dim=0)))


@torch.no_grad()
def build_pool(model: nn.Module, cnn: PatternCNN, arrays: dict[str, np.ndarray], batch_size: int = 32) -> TaskPool:
    """Precompute original representations and per-head CNN features ([features ; pattern probabilities])."""
    input_ids = torch.as_tensor(arrays["input_ids"]).long()
    attention_mask = torch.as_tensor(arrays["attention_mask"]).long()
    maps = torch.as_tensor(arrays["maps"])  # (N, layers, heads, S, S) float16
    representations, features = [], []
    model.eval()
    for start in range(0, len(input_ids), batch_size):
        part = slice(start, start + batch_size)
        representations.append(sentence_representations(model, input_ids[part], attention_mask[part]))
        batch_maps = maps[part].float()
        flat = batch_maps.flatten(0, 2)  # (B*layers*heads, S, S)
        pooled = cnn.features(flat)
        head = torch.cat([pooled, cnn.classifier(pooled).softmax(-1)], dim=-1)
        features.append(head.view(*batch_maps.shape[:3], -1))
    return TaskPool(input_ids, attention_mask, torch.cat(representations), torch.cat(features))
