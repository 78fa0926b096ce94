"""Shared by the benchmark scripts: the data they run on and how they write reports/benchmarks.md.

Each script writes its section to ``reports/benchmarks/<name>.{json,md}``; the sections present
are then joined, in SECTIONS order, into ``reports/benchmarks.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from mcap.devices import pick_device
from mcap.evaluate import device_name, machine_record
from mcap.splits import read_split

REPORTS = Path("reports")
SECTIONS = ["trainer_throughput", "latency", "stage_times", "stage_overhead"]
TITLE = "# Performance benchmarks"
INTRO = ("Produced by the scripts in `benchmarks/` (see each section for its command); not part of `dvc repro`, "
         "not timed tests. Each section names the machine it ran on.")


def machine() -> str:
    """One line naming the hardware a number was measured on."""
    return f"{device_name(pick_device())}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def task_sentences(task: str, split: str) -> pd.DataFrame:
    """A split written by the pipeline's ``split`` stage (run ``dvc repro split`` first)."""
    return read_split(Path("data/processed") / task, split)


def write_section(name: str, markdown: str, data: dict) -> None:
    """Store one section and rebuild reports/benchmarks.md from every section present."""
    folder = REPORTS / "benchmarks"
    folder.mkdir(parents=True, exist_ok=True)
    record = {**data, "machine_record": machine_record(pick_device())}  # CPU family, model and flags
    (folder / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (folder / f"{name}.md").write_text(markdown.strip() + "\n")
    sections = [(folder / f"{section}.md").read_text().strip() for section in SECTIONS if (folder / f"{section}.md").is_file()]
    (REPORTS / "benchmarks.md").write_text("\n\n".join([TITLE, INTRO, *sections]) + "\n")
    print(f"wrote {folder / name}.md and reports/benchmarks.md")
