"""Per-head attention maps of the pre-trained model on a pool of train sentences (MCAP input).

Sentences are padded/truncated to a fixed ``size`` so that every map is size x size; padding
rows and columns are 0. Maps are stored as float16 in a compressed ``.npz`` together with the
token ids and attention masks the meta-controller needs to run the same sentences again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mcap.figures import saved_figure
from mcap.heads import attention_probabilities


def extract_maps(model: nn.Module, tokenizer, sentences: list[str], size: int, batch_size: int) -> dict[str, np.ndarray]:
    """``maps`` (N, layers, heads, size, size) float16, ``input_ids`` and ``attention_mask`` (N, size), computed where
    ``model`` is."""
    encoded = tokenizer(sentences, padding="max_length", truncation=True, max_length=size, return_tensors="pt")
    device = next(model.parameters()).device
    model.eval()
    maps = []
    with torch.no_grad():
        for start in tqdm(range(0, len(sentences), batch_size), desc="attention maps", leave=False):
            ids = encoded["input_ids"][start:start + batch_size].to(device)
            mask = encoded["attention_mask"][start:start + batch_size].to(device)
            maps.append(padded_maps(attention_probabilities(model, ids, mask), mask).half().cpu())
    return {"maps": torch.cat(maps).numpy(), "input_ids": encoded["input_ids"].numpy(),
            "attention_mask": encoded["attention_mask"].numpy()}


def padded_maps(layers: list[torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
    """Stack per-layer (B, H, S, S) probabilities to (B, layers, H, S, S) with padding rows zeroed."""
    stacked = torch.stack(layers, dim=1)  # (B, layers, H, S, S); padded keys already get 0
    return stacked * attention_mask[:, None, None, :, None].to(stacked.dtype)  # zero padded query rows


def save_maps(path: Path, arrays: dict[str, np.ndarray], sentences: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, sentences=np.array(sentences), **arrays)


def plot_map_grid(maps: np.ndarray, length: int, title: str, path: Path) -> None:
    """One sentence's layers x heads grid of attention maps (the paper's Fig. 1 analogue)."""
    layers, heads = maps.shape[:2]
    with saved_figure(path, layers, heads, figsize=(1.1 * heads, 1.1 * layers + 0.6), squeeze=False, dpi=90) as (fig, axes):
        for layer in range(layers):
            for head in range(heads):
                ax = axes[layer][head]
                ax.imshow(maps[layer, head, :length, :length].astype(np.float32), cmap="Blues", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if head == 0:
                    ax.set_ylabel(f"L{layer}", fontsize=8)
                if layer == 0:
                    ax.set_title(f"H{head}", fontsize=8)
        fig.suptitle(title, fontsize=9)
