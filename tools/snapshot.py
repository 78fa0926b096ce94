"""Keep a profile run's results on the main line, next to the default run's: reports/runs/<name>/.

A profile (``profiles/<name>.args``) runs as a DVC experiment; its outputs live in the experiment's
commit, which ``dvc exp branch <exp> exp/<name>`` keeps as a git branch. This copies what a reader
needs out of that commit -- the ``params.yaml`` and ``dvc.lock`` that produced the numbers, and the
reports -- and writes ``summary.md`` (its Table I under a title naming the commit), which
``python tools/render.py results`` shows in docs/results.md::

    python tools/snapshot.py exp/cpu-scale cpu-scale "Table I — CPU-scale profile"
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mcap.errors import McapError
from mcap.outputs import atomic_dir
from render import demote_headings

RUNS_DIR = Path("reports/runs")
TABLE = "reports/table1.md"
# What a run's numbers need to be read and checked; the explanations' HTML pages (tens of MB) stay on the branch.
KEPT = ("params.yaml", "dvc.lock", TABLE, "reports/table1.csv", "reports/speedups.json", "reports/summary.json", "reports/evaluate",
        "reports/finetune", "reports/prune", "reports/mcap", "reports/explain/lime_table.md",
        "reports/explain/faithfulness.md", "reports/explain/summary.json", "reports/explain/figures",
        "reports/post_prune", "reports/deploy", "reports/structured.md", "reports/structured.csv",
        "reports/structured.png")


def _git(*arguments: str) -> bytes:
    return subprocess.run(["git", *arguments], capture_output=True, check=True).stdout


def resolve_commit(rev: str) -> str:
    """The full hash of ``rev`` (a branch, tag or hash); McapError when git does not know it."""
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()
    except subprocess.CalledProcessError:
        raise McapError(f"{rev}: no such git commit or branch; keep an experiment with "
                        "`dvc exp branch <experiment> exp/<name>` and pass that branch") from None


def snapshot_path(path: str) -> Path:
    """Where a file of the run lands inside its snapshot folder (reports/ is dropped: it is all reports)."""
    return Path(path.removeprefix("reports/"))


def summary_markdown(table: str, title: str, rev: str, commit: str) -> str:
    """The run's Table I under ``title``, with its provenance; the table's own headings demoted one level."""
    return (f"# {title}\n\nCopied by `python tools/snapshot.py` from commit `{commit[:10]}` (`{rev}`); "
            "the `params.yaml` and `dvc.lock` beside this file are the ones that produced it.\n\n"
            f"{demote_headings(table.strip())}\n")


def snapshot_run(rev: str, name: str, title: str, runs_dir: Path = RUNS_DIR) -> Path:
    """Copy the kept files of ``rev`` into ``runs_dir/name`` (replacing it) and write its summary.md."""
    commit = resolve_commit(rev)
    files = _git("ls-tree", "-r", "--name-only", commit, "--", *KEPT).decode().splitlines()
    if TABLE not in files:
        raise McapError(f"{rev}: has no {TABLE}; run the experiment through the report stage before keeping it")
    with atomic_dir(runs_dir / name) as staging:
        for path in files:
            target = staging / snapshot_path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_git("show", f"{commit}:{path}"))
        table = (staging / snapshot_path(TABLE)).read_text()
        (staging / "summary.md").write_text(summary_markdown(table, title, rev, commit))
    return runs_dir / name


def main() -> None:
    """``python tools/snapshot.py REV NAME [TITLE]``."""
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python tools/snapshot.py REV NAME [TITLE]  (e.g. exp/cpu-scale cpu-scale)")
    rev, name = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) == 4 else f"Table I — {name}"
    try:
        folder = snapshot_run(rev, name, title)
    except McapError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"{folder}: {rev} kept; run `python tools/render.py results` to show it in docs/results.md")


if __name__ == "__main__":
    main()
