"""Keeping a profile run's results (an experiment branch) under reports/runs/."""

import subprocess

import pytest

import render
from mcap.errors import McapError
from snapshot import snapshot_run

TABLE = "# Table I — our measurements\n\n## sst2\n\n| Pruning technique | MCC |\n|---|---|\n| 7. MCAP | 0.4242 |\n"


def git(repo, *arguments):
    return subprocess.run(["git", "-C", str(repo), *arguments], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository whose branch exp/big holds a finished run; the working directory is its root."""
    files = {"params.yaml": "seed: 42\n", "dvc.lock": "schema: '2.0'\n", "reports/table1.md": TABLE,
             "reports/evaluate/sst2-mcap/seed-42.json": '{"test": {"mcc": 0.4242}}\n',
             "reports/explain/models/sst2-mcap/T1_lime.html": "<html>large</html>\n"}
    git(tmp_path, "init", "-q", "-b", "main")
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run")
    git(tmp_path, "branch", "exp/big")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_kept_run_has_its_params_lock_and_reports_and_a_titled_summary_naming_the_commit(repo):
    folder = snapshot_run("exp/big", "big", "Table I — big profile")
    assert (folder / "params.yaml").read_text() == "seed: 42\n"
    assert (folder / "dvc.lock").read_text() == "schema: '2.0'\n"
    assert (folder / "evaluate/sst2-mcap/seed-42.json").read_text() == '{"test": {"mcc": 0.4242}}\n'
    assert not (folder / "explain").exists()  # the explanations' HTML stays on the branch
    summary = (folder / "summary.md").read_text()
    commit = git(repo, "rev-parse", "exp/big").strip()
    assert summary.startswith("# Table I — big profile\n")
    assert f"`{commit[:10]}` (`exp/big`)" in summary
    assert summary.endswith("## Table I — our measurements\n\n### sst2\n\n| Pruning technique | MCC |\n|---|---|\n"
                            "| 7. MCAP | 0.4242 |\n")  # headings demoted, the table as it was
    block = render.generated_block(render.sources())
    assert block.startswith("## Table I — big profile")  # kept runs come first in docs/results.md
    assert "### Table I — our measurements" in block and "0.4242" in block


def test_keeping_a_run_again_replaces_the_old_copy(repo):
    stale = snapshot_run("exp/big", "big", "old") / "stale.txt"
    stale.write_text("left over")
    snapshot_run("exp/big", "big", "new")
    assert not stale.exists()


def test_an_unknown_rev_or_one_without_table_i_is_a_clear_error_and_writes_nothing(repo):
    with pytest.raises(McapError, match="exp/missing: no such git commit or branch"):
        snapshot_run("exp/missing", "big", "t")
    git(repo, "rm", "-q", "reports/table1.md")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "no table")
    with pytest.raises(McapError, match="has no reports/table1.md"):
        snapshot_run("HEAD", "big", "t")
    assert not (repo / "reports/runs").exists()
