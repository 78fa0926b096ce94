"""Learning curves with DVCLive (declared as ``dvc plots`` in dvc.yaml)."""

from __future__ import annotations

from pathlib import Path


def log_history(live_dir: Path, history: list[dict[str, float]], summary: dict[str, float] | None = None) -> None:
    """One DVCLive step per record (an epoch, a controller update), every key a curve; then
    ``summary`` as plain metrics in ``metrics.json``."""
    from dvclive import Live

    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        for record in history:
            for name, value in record.items():
                live.log_metric(name, value)
            live.next_step()
        for name, value in (summary or {}).items():
            live.log_metric(name, value, plot=False)
