"""Attention-map patterns (Kovaleva et al. 2019) and the CNN that classifies them (paper §II.D).

The paper trained a 5-convolution CNN on 1,000 labelled maps (400 from Kovaleva et al., 600 from
Prasanna et al.). Those images are not available here, so :func:`synthetic_maps` draws labelled
maps from each pattern's definition instead. A map is an S x S array for a sentence of n <= S
tokens (position 0 = [CLS], n-1 = [SEP]); its first n rows are probability distributions over
the first n columns and everything outside the n x n square is 0 (padding).

Patterns (Kovaleva et al., Fig. 1):

* ``vertical``: every token attends to the same few columns, [CLS] and/or [SEP]
  (and sometimes a punctuation mark);
* ``diagonal``: every token attends to its neighbour (offset -1 or +1) or itself;
* ``vertical+diagonal``: a mix of the two;
* ``block``: tokens attend within contiguous segments;
* ``heterogeneous``: no regular structure.

Each map is a mixture ``(1 - noise) * pattern + noise * random rows`` so that the classes are
not trivially clean, and sentence length n is drawn at random.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from mcap.errors import McapError
from mcap.figures import saved_figure

PATTERN_CNN = Path("models/pattern_cnn/model.safetensors")  # written by the pattern_cnn stage
PATTERNS = ("vertical", "diagonal", "vertical+diagonal", "block", "heterogeneous")
VERTICAL = PATTERNS.index("vertical")


def _normalise(rows: np.ndarray) -> np.ndarray:
    return rows / rows.sum(axis=1, keepdims=True)


def _vertical(n: int, rng: np.random.Generator) -> np.ndarray:
    columns = [c for c, p in ((0, 0.7), (n - 1, 0.8)) if rng.random() < p] or [n - 1]
    if n > 4 and rng.random() < 0.3:  # a punctuation column
        columns.append(int(rng.integers(1, n - 1)))
    rows = np.full((n, n), 1e-3)
    rows[:, columns] += rng.dirichlet(np.ones(len(columns)), size=n)
    return _normalise(rows)


def _diagonal(n: int, rng: np.random.Generator) -> np.ndarray:
    offset = int(rng.choice([-1, 0, 1], p=[0.45, 0.1, 0.45]))
    rows = np.full((n, n), 1e-3)
    for i in range(n):
        rows[i, min(max(i + offset, 0), n - 1)] += 1.0
        if rng.random() < 0.3:  # some spill onto the other neighbour
            rows[i, min(max(i - offset, 0), n - 1)] += rng.random() * 0.5
    return _normalise(rows)


def _block(n: int, rng: np.random.Generator) -> np.ndarray:
    cuts = np.sort(rng.choice(np.arange(1, n), size=min(n - 1, int(rng.integers(1, 4))), replace=False))
    rows = np.full((n, n), 1e-3)
    for start, end in zip(np.r_[0, cuts], np.r_[cuts, n]):
        rows[start:end, start:end] += rng.random((end - start, end - start)) + 0.5
    return _normalise(rows)


def _heterogeneous(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.dirichlet(np.full(n, 0.3), size=n)


def pattern_map(label: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """An n x n attention map of the given pattern, before noise and padding."""
    name = PATTERNS[label]
    if name == "vertical+diagonal":
        weight = rng.uniform(0.35, 0.65)
        return weight * _vertical(n, rng) + (1 - weight) * _diagonal(n, rng)
    return {"vertical": _vertical, "diagonal": _diagonal, "block": _block, "heterogeneous": _heterogeneous}[name](n, rng)


def synthetic_maps(count: int, size: int, seed: int, max_noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """``count`` maps (count, size, size) float32, balanced over the five patterns, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(PATTERNS)
    rng.shuffle(labels)
    maps = np.zeros((count, size, size), dtype=np.float32)
    for index, label in enumerate(labels):
        n = int(rng.integers(min(6, size), size + 1))
        noise = rng.uniform(0, max_noise)
        square = (1 - noise) * pattern_map(int(label), n, rng) + noise * rng.dirichlet(np.ones(n), size=n)
        maps[index, :n, :n] = square
    return maps, labels.astype(np.int64)


class PatternCNN(nn.Module):
    """Five convolution layers, global average pooling and a linear layer over the 5 patterns.

    Input (B, 1, S, S) attention maps; output (B, 5) logits. :meth:`features` gives the pooled
    (B, 64) representation the meta-controller uses as per-head features.
    """

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32, 32, 64)):
        super().__init__()
        layers, previous = [], 1
        for index, width in enumerate(channels):
            layers += [nn.Conv2d(previous, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            if index < len(channels) - 1:
                layers.append(nn.MaxPool2d(2))  # S -> S/16 after four poolings
            previous = width
        self.convolutions = nn.Sequential(*layers)
        self.classifier = nn.Linear(previous, len(PATTERNS))

    def features(self, maps: torch.Tensor) -> torch.Tensor:
        # maps: (B, S, S) or (B, 1, S, S). Rescale so a row's mass does not depend on sentence length.
        if maps.dim() == 3:
            maps = maps[:, None]
        lengths = (maps.sum(dim=-1) > 0).sum(dim=-1, keepdim=True).clamp_min(1)  # (B, 1, 1): valid rows
        return self.convolutions(maps * lengths[..., None]).mean(dim=(2, 3))  # (B, C)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(maps))


@dataclass
class CnnTraining:
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int


def train_pattern_cnn(maps: np.ndarray, labels: np.ndarray, settings: CnnTraining) -> tuple[PatternCNN, list[float]]:
    """Train on (N, S, S) maps; return the model (eval mode) and the loss per epoch."""
    torch.manual_seed(settings.seed)
    model = PatternCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    inputs, targets = torch.from_numpy(maps), torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(settings.seed)
    losses = []
    for _epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            batch = order[start:start + settings.batch_size]
            loss = nn.functional.cross_entropy(model(inputs[batch]), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / len(order))
    return model.eval(), losses


@torch.no_grad()
def predict_patterns(model: PatternCNN, maps: np.ndarray | torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """(N, 5) pattern probabilities of (N, S, S) maps, computed where ``model`` is."""
    maps = torch.as_tensor(maps, dtype=torch.float32, device=next(model.parameters()).device)
    return torch.cat([model(maps[i:i + batch_size]).softmax(-1) for i in range(0, len(maps), batch_size)]).cpu().numpy()


def load_labelled_maps(folder: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A real labelled set: ``maps.npy`` (N, size, size) and ``labels.txt`` (one pattern name per line)."""
    maps_file, labels_file = folder / "maps.npy", folder / "labels.txt"
    for path in (maps_file, labels_file):
        if not path.is_file():
            raise McapError(f"mcap.cnn_images: {path} not found (expected maps.npy and labels.txt)")
    maps = np.load(maps_file).astype(np.float32)
    names = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
    if maps.ndim != 3 or maps.shape[1:] != (size, size):
        raise McapError(f"{maps_file}: shape {maps.shape}, expected (N, {size}, {size}) to match mcap.map_length")
    if len(names) != len(maps):
        raise McapError(f"{labels_file}: {len(names)} labels for {len(maps)} maps")
    unknown = sorted(set(names) - set(PATTERNS))
    if unknown:
        raise McapError(f"{labels_file}: unknown patterns {unknown}; accepted: {', '.join(PATTERNS)}")
    return maps, np.array([PATTERNS.index(name) for name in names], dtype=np.int64)


def fit_pattern_cnn(maps: np.ndarray, labels: np.ndarray, settings: CnnTraining,
                    heldout_fraction: float = 0.2) -> tuple[PatternCNN, dict]:
    """Train on a stratified 80% and report held-out accuracy and the confusion pairs."""
    from sklearn.model_selection import train_test_split

    train_index, test_index = train_test_split(np.arange(len(maps)), test_size=heldout_fraction,
                                               stratify=labels, random_state=settings.seed)
    model, losses = train_pattern_cnn(maps[train_index], labels[train_index], settings)
    predicted = predict_patterns(model, maps[test_index]).argmax(axis=1)
    actual = labels[test_index]
    report = {
        "train_maps": len(train_index),
        "heldout_maps": len(test_index),
        "heldout_accuracy": float((predicted == actual).mean()),
        "per_pattern_accuracy": {name: float((predicted[actual == i] == i).mean()) for i, name in enumerate(PATTERNS)},
        "train_loss_per_epoch": losses,
        "confusion": [{"actual": PATTERNS[a], "predicted": PATTERNS[p]} for a, p in zip(actual, predicted)],
    }
    return model, report


def head_patterns(model: PatternCNN, maps: np.ndarray) -> np.ndarray:
    """The pattern of each head of (N, layers, heads, S, S) maps: argmax of its mean probabilities -> (layers, heads)."""
    count, layers, heads = maps.shape[:3]
    probabilities = predict_patterns(model, maps.reshape(-1, *maps.shape[3:]).astype(np.float32))
    return probabilities.reshape(count, layers, heads, -1).mean(axis=0).argmax(axis=-1)


def plot_pattern_distribution(patterns_by_task: dict[str, np.ndarray], path: Path) -> None:
    """Per task, stacked bars: how many heads of each layer the CNN assigns to each pattern."""
    with saved_figure(path, 1, len(patterns_by_task), figsize=(4.2 * len(patterns_by_task), 3.4), squeeze=False) as (_fig, axes):
        for ax, (task, patterns) in zip(axes[0], patterns_by_task.items()):
            bottom = np.zeros(patterns.shape[0])
            for index, name in enumerate(PATTERNS):
                counts = (patterns == index).sum(axis=1)
                ax.bar(range(patterns.shape[0]), counts, bottom=bottom, label=name)
                bottom += counts
            ax.set(title=f"{task}: predicted pattern per head", xlabel="layer", ylabel="heads", xticks=range(patterns.shape[0]))
        axes[0][-1].legend(fontsize=7, loc="upper right")


def load_pattern_cnn(path: Path = PATTERN_CNN) -> PatternCNN:
    """The trained attention-pattern CNN, in eval mode, on :func:`mcap.devices.pick_device` (beside the model whose
    maps it scores)."""
    from mcap.devices import pick_device

    cnn = PatternCNN()
    cnn.load_state_dict(load_file(str(path)))
    return cnn.eval().to(pick_device())
