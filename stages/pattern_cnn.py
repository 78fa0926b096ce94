"""Stage pattern_cnn: train the 5-convolution attention-pattern classifier and apply it to the real heads."""

import csv
from pathlib import Path

from safetensors.torch import save_file

from mcap.attention_maps import load_maps
from mcap.cli import run_stage
from mcap.outputs import atomic_dir, write_json
from mcap.patterns import (
    PATTERNS,
    CnnTraining,
    fit_pattern_cnn,
    head_patterns,
    load_labelled_maps,
    plot_pattern_distribution,
    synthetic_maps,
)

REPORT_DIR = Path("reports/mcap/cnn")


def main(params, args):
    mcap = params.mcap
    size, seed, images = mcap.map_length, mcap.cnn_seed, mcap.cnn_images
    if images:
        maps, labels, source = *load_labelled_maps(Path(images), size), images
    else:
        maps, labels = synthetic_maps(mcap.cnn_maps, size, seed)
        source = "synthetic (mcap.patterns.synthetic_maps)"
    settings = CnnTraining(epochs=mcap.cnn_epochs, batch_size=64, learning_rate=mcap.cnn_lr, seed=seed)
    model, report = fit_pattern_cnn(maps, labels, settings)
    with atomic_dir(Path("models/pattern_cnn")) as staging:
        save_file(model.state_dict(), str(staging / "model.safetensors"))
    patterns = {task: head_patterns(model, load_maps(Path("data/attention") / f"{task}.npz")["maps"])
                for task in params.all_tasks()}
    plot_pattern_distribution(patterns, REPORT_DIR / "head_patterns.png")
    with open(REPORT_DIR / "confusion.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["actual", "predicted"])
        writer.writeheader()
        writer.writerows(report.pop("confusion"))
    shares = {task: {name: float((found == i).mean()) for i, name in enumerate(PATTERNS)} for task, found in patterns.items()}
    write_json(REPORT_DIR / "metrics.json", {"source": source, **report, "head_pattern_share": shares})


if __name__ == "__main__":
    run_stage(main)
