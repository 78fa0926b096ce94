"""Learning curves with DVCLive (declared as ``dvc plots`` in dvc.yaml)."""

from __future__ import annotations

from pathlib import Path

CURVE_NAMES = {"train_loss": "train/loss", "val_loss": "val/loss", "val_accuracy": "val/accuracy", "val_mcc": "val/mcc"}


def log_curves(live_dir: Path, history: list[dict[str, float]], summary: dict[str, float]) -> None:
    """One DVCLive step per epoch, then ``summary`` as plain metrics in ``metrics.json``."""
    from dvclive import Live

    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        for record in history:
            for key, name in CURVE_NAMES.items():
                if key in record:
                    live.log_metric(name, record[key])
            live.next_step()
        for name, value in summary.items():
            live.log_metric(name, value, plot=False)
