"""The post_prune stages' results as later stages read them: where each (fine-tuning seed, pruning seed) wrote its
record, and the name of the architecture a budget left (its layout), by which the post_prune_latency stage times it
once."""

from __future__ import annotations

import json
from pathlib import Path


def post_prune_results(run_dir: Path, seeds: list[int], samples: list[int]) -> dict[tuple[int, int], dict]:
    """A post_prune stage's results in ``run_dir`` (``seed-F/sample-P.json``), by (fine-tuning seed, pruning seed)."""
    return {(seed, sample): json.loads((run_dir / f"seed-{seed}" / f"sample-{sample}.json").read_text())
            for seed in seeds for sample in samples}


def layout_key(kept_heads: list[list[int]], intermediate_sizes: list[int]) -> str:
    """One architecture's name: the heads and FFN width each layer kept (which heads does not change the time)."""
    return json.dumps({"heads": [len(heads) for heads in kept_heads], "ffn": list(intermediate_sizes)},
                      separators=(",", ":"))
