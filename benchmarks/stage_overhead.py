"""Benchmark 5(c), continued: where the fixed cost of a pipeline stage goes.

DVC runs every stage command as its own Python process, so each stage pays the interpreter's
start and its imports before it computes anything, and most stages load a model; an explain stage
also pays SHAP's numba compilation, which SHAP does not cache between processes. Each part is timed
here in fresh processes (median of --repeats) on the pipeline's own files, and set against the
stage times of section (c):

    python benchmarks/stage_overhead.py      # after `dvc repro` and `benchmarks/stage_times.py`

It reads the embedded default's params and models and writes nothing but its report section.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from common import REPORTS, machine, write_section

STAGE = "stages/prune.py"  # a stage's imports (prune's are among the widest)
# Nested by construction, so each part is the difference of two consecutive measurements.
TORCH_TRANSFORMERS = "import torch, transformers; from transformers import BertForSequenceClassification"
IMPORT_STAGE = f"{TORCH_TRANSFORMERS}; import runpy; stage = runpy.run_path({STAGE!r}, run_name='imports_only')"
LOAD_AND_SAVE = IMPORT_STAGE + """
import tempfile
from pathlib import Path
from mcap.params import Params
params = Params.load()
model, tokenizer = stage['load_pretrained'](params.model.name_or_path, params.prune.seeds[0])
with tempfile.TemporaryDirectory() as folder:
    stage['save_model'](model, tokenizer, Path(folder), {'strategy': 'none'})
"""
STEPS = [  # (key, the part this step adds to the one before, whose it is, code)
    ("interpreter", "Python interpreter start", "not ours", "pass"),
    ("torch_transformers", "import torch + transformers (BERT modelling)", "not ours", TORCH_TRANSFORMERS),
    ("stage_imports", "the stage's other imports (mcap, pandas, scikit-learn, ...)", "ours to trim", IMPORT_STAGE),
    ("load_and_save", "load the pre-trained model, save it (safetensors + tokenizer)", "the stage's work", LOAD_AND_SAVE),
]
# One process: the same SHAP explanation twice; the first call also compiles SHAP's numba kernels.
SHAP_FIRST_CALL = """
import json, time
from pathlib import Path
from mcap.explain import PAPER_TEXTS, TextClassifier, explain_shap
from mcap.modeling import load_model
from mcap.params import Params
params = Params.load()
from mcap.grid import finetuned_dir
model, tokenizer, _ = load_model(finetuned_dir('sst2', 'none', params.prune.ratios[0], params.seeds[0], params.prune.seeds[0]))
classifier = TextClassifier(model, tokenizer, params.train.max_seq_len)
classifier.logits([PAPER_TEXTS['T1']])  # warm the model up first: only SHAP's first call should differ
seconds = []
for _ in range(2):
    start = time.perf_counter()
    explain_shap(classifier, PAPER_TEXTS['T1'], params.explain.shap_max_evals)
    seconds.append(time.perf_counter() - start)
print(json.dumps(seconds))
"""


def process_seconds(code: str, repeats: int) -> float:
    """Median wall time of ``python -c code`` in a fresh process."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def shap_compile_seconds(repeats: int) -> float:
    """Median over fresh processes of (first - second) time of one SHAP explanation."""
    gaps = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", SHAP_FIRST_CALL], check=True, capture_output=True, text=True)
        first, second = json.loads(done.stdout.strip().splitlines()[-1])
        gaps.append(first - second)
    return statistics.median(gaps)


def measure(repeats: int) -> dict[str, float]:
    """Seconds: each of :data:`STEPS` in fresh processes (cumulative), and SHAP's first-call compilation."""
    return {**{key: process_seconds(code, repeats) for key, _part, _whose, code in STEPS},
            "shap_compile": shap_compile_seconds(repeats)}


def markdown(parts: dict[str, float], timed_run: dict, repeats: int) -> str:
    """The section: each part of a stage's fixed cost, and what the parts cost the whole timed run."""
    stages = timed_run["stages"]
    explains = sum(stage.startswith("explain@") for stage in stages)
    rows, before = [], 0.0
    for key, part, whose, _code in STEPS:
        rows.append((part, parts[key] - before, whose))
        before = parts[key]
    started = parts["stage_imports"] * len(stages)  # every stage starts Python and imports; most also load a model
    shap_total = parts["shap_compile"] * explains
    lines = [
        "## (c, continued) Where a stage's fixed cost goes",
        "",
        (f"`python benchmarks/stage_overhead.py --repeats {repeats}` on {machine()}: each part timed in fresh processes "
         f"(median of {repeats}), cumulative, on `{STAGE}`'s imports and the embedded model."),
        "",
        "| Part | Seconds | |", "|---|---|---|",
        *[f"| {name} | {seconds:.1f} | {whose} |" for name, seconds, whose in rows],
        "",
        (f"Starting Python and importing, paid by each of the {len(stages)} stages of section (c), is about "
         f"{started / 60:.1f} of its {timed_run['total_seconds'] / 60:.1f} min; SHAP's first call in each of the "
         f"{explains} explain stages adds {parts['shap_compile']:.1f} s of numba compilation ({shap_total / 60:.1f} min), "
         "since SHAP does not cache its compiled kernels between processes. Running each stage as its own process is "
         "how DVC runs a pipeline; what is ours to trim is the imports row, and the number of stages."),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per measurement (median)")
    args = parser.parse_args()
    stage_times_file = REPORTS / "benchmarks" / "stage_times.json"
    if not stage_times_file.is_file():
        sys.exit(f"error: {stage_times_file} not found; run `python benchmarks/stage_times.py --force` first")
    parts = measure(args.repeats)
    timed_run = json.loads(stage_times_file.read_text())
    write_section("stage_overhead", markdown(parts, timed_run, args.repeats), {"repeats": args.repeats, **parts})


if __name__ == "__main__":
    main()
