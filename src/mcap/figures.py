"""Figures written by the stages: headless matplotlib, one helper for the save boilerplate."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def saved_figure(path: Path, *grid: int, dpi: int = 110, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """Yield ``plt.subplots(*grid, **subplots)``; on success lay it out tightly and save it to
    ``path`` (folders created). The figure is closed either way."""
    import matplotlib

    matplotlib.use("Agg")  # stages run headless
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*grid, **subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
