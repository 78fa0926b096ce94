"""Stage pattern_cnn: train the 5-convolution attention-pattern classifier (the attention_maps stage applies it to
the real heads). It reads no task's data, so that a new task retrains neither it nor the controllers that use it."""

import csv
from pathlib import Path

from safetensors.torch import save_file

from mcap.cli import run_stage
from mcap.outputs import atomic_dir, write_json
from mcap.patterns import CnnTraining, fit_pattern_cnn, load_labelled_maps, synthetic_maps

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
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    with open(REPORT_DIR / "confusion.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["actual", "predicted"])
        writer.writeheader()
        writer.writerows(report.pop("confusion"))
    write_json(REPORT_DIR / "metrics.json", {"source": source, **report})


if __name__ == "__main__":
    run_stage(main)
