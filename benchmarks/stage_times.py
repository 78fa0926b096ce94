"""Benchmark 5(c): wall time of every stage of ``dvc repro``, measured while it runs.

Runs ``dvc repro`` with the given arguments, passes its output through, and timestamps each
"Running stage" line; a stage lasts until the next one starts (or the run ends). Writes the
per-stage times and per-family totals (prune@*, finetune@*, ...) to reports/benchmarks.md.

    python benchmarks/stage_times.py --force     # time the whole default pipeline
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import defaultdict

from common import machine, write_section

RUNNING = re.compile(r"Running stage '([^']+)'")
TARGET_MINUTES = 40  # the default run's budget on the 2-core machine


def timed_stages(command: list[str]) -> tuple[list[tuple[str, float]], float, int]:
    """Run ``command`` (a ``dvc repro``); [(stage, seconds)] in run order, the total seconds and its exit status."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    starts: list[tuple[str, float]] = []
    for line in process.stdout:
        sys.stdout.write(line)
        match = RUNNING.search(line)
        if match:
            starts.append((match.group(1), time.perf_counter()))
    status = process.wait()
    end = time.perf_counter()
    times = [(stage, (starts[i + 1][1] if i + 1 < len(starts) else end) - began) for i, (stage, began) in enumerate(starts)]
    return times, end - start, status


def markdown(times: list[tuple[str, float]], total: float, arguments: list[str]) -> str:
    families: dict[str, list[float]] = defaultdict(list)
    for stage, seconds in times:
        families[stage.split("@")[0]].append(seconds)
    verdict = "within" if total <= TARGET_MINUTES * 60 else "over"
    lines = [
        "## (c) Wall time per stage of the default `dvc repro`", "",
        (f"`python benchmarks/stage_times.py {' '.join(arguments)}` on {machine()}: **{total / 60:.1f} min** in total "
         f"({verdict} the {TARGET_MINUTES}-min target), {len(times)} stages run, each a fresh Python process "
         "(what that costs a stage: section (c, continued))."),
        "",
        "| Stage family | Stages | Total (s) | Mean per stage (s) | Share |", "|---|---|---|---|---|",
    ]
    for family, seconds in sorted(families.items(), key=lambda item: -sum(item[1])):
        lines.append(f"| {family} | {len(seconds)} | {sum(seconds):.0f} | {sum(seconds) / len(seconds):.1f} | "
                     f"{sum(seconds) / total:.0%} |")
    lines += ["", "<details><summary>Every stage</summary>", "", "| Stage | Seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in times] + ["", "</details>"]
    return "\n".join(lines)


def main() -> None:
    arguments = sys.argv[1:]
    times, total, status = timed_stages(["dvc", "repro", *arguments])
    if status != 0:
        sys.exit(f"error: dvc repro {' '.join(arguments)} failed (exit {status}); no times written")
    write_section("stage_times", markdown(times, total, arguments),
                  {"arguments": arguments, "machine": machine(), "total_seconds": total, "stages": dict(times)})


if __name__ == "__main__":
    main()
