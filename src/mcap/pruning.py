"""Running a strategy on the pre-trained model and describing what it removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mcap.budget import removed_mac_fraction
from mcap.ffn import ffn_layout
from mcap.figures import saved_figure
from mcap.heads import head_layout, head_size
from mcap.modeling import unpruned_layers
from mcap.seeding import seed_everything
from mcap.strategies import PruneContext, get_strategy


def prune_model(strategy_name: str, context: PruneContext) -> dict[str, Any]:
    """Prune ``context.model`` in place; return the record written to heads.json and pruning.json."""
    strategy = get_strategy(strategy_name)
    seed_everything(context.seed)
    outcome = strategy.apply(context)
    layout = head_layout(context.model)
    config = context.model.config
    total = unpruned_layers(config) * config.num_attention_heads  # removed layers' heads count as removed
    kept = sum(len(heads) for heads in layout)
    return {
        "strategy": strategy_name,
        "label": strategy.label,
        "kind": outcome.kind,
        "task": context.task,
        # None for the unpruned model, so that its outputs (and fine-tuning) do not change with the ratio
        "ratio": None if outcome.kind == "none" else context.ratio,
        "total_heads": total,
        "kept_heads_count": kept,
        "removed_heads_count": total - kept,
        "removed_heads": {str(layer): heads for layer, heads in sorted(outcome.removed_heads.items())},
        "kept_heads": layout,
        "head_scores": None if outcome.head_scores is None else outcome.head_scores.tolist(),
        "ffn_widths": ffn_layout(context.model),
        # Of the encoder's MACs at train.max_seq_len tokens: heads and FFN neurons removed (unstructured zeros are not)
        "removed_mac_fraction": removed_mac_fraction(context.model, context.max_seq_len),
        "encoder_weight_sparsity": outcome.weight_sparsity,
        "per_head_weight_density": per_head_density(context.model) if outcome.kind == "unstructured" else None,
        "notes": outcome.notes,
    }


def per_head_density(model: torch.nn.Module) -> list[list[float]]:
    """Fraction of non-zero weights in each head's Q/K/V rows and output-projection columns."""
    d_h = head_size(model)
    density = []
    for layer in model.base_model.encoder.layer:
        attention = layer.attention
        weights = [attention.self.query.weight, attention.self.key.weight, attention.self.value.weight,
                   attention.output.dense.weight.T]
        heads = weights[0].shape[0] // d_h
        density.append([
            float(sum((w[h * d_h:(h + 1) * d_h] != 0).sum() for w in weights) / sum(w[h * d_h:(h + 1) * d_h].numel() for w in weights))
            for h in range(heads)
        ])
    return density


def plot_head_map(record: dict[str, Any], path: Path) -> None:
    """Layers x heads heatmap: importance scores (removed heads crossed), or weight density."""
    layers = len(record["kept_heads"])
    heads = record["total_heads"] // layers
    if record["head_scores"] is not None:
        values, label = record["head_scores"], "importance score"
    elif record["per_head_weight_density"] is not None:
        values, label = record["per_head_weight_density"], "non-zero weight fraction"
    else:
        values, label = [[1.0] * heads for _ in range(layers)], "kept"
    with saved_figure(path, figsize=(1.0 + 0.45 * heads, 1.2 + 0.45 * layers)) as (fig, ax):
        image = ax.imshow(values, cmap="viridis", aspect="auto")
        for layer, removed in record["removed_heads"].items():
            for head in removed:
                ax.text(head, int(layer), "×", ha="center", va="center", color="red", fontsize=12, fontweight="bold")
        ax.set(xlabel="head", ylabel="layer", xticks=range(heads), yticks=range(layers),
               title=f"{record['task']} · {record['strategy']} · removed {record['removed_heads_count']}/{record['total_heads']} heads")
        fig.colorbar(image, ax=ax, label=label)
