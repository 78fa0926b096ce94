"""The benchmark scripts' bookkeeping (their measurements themselves are benchmarks, not tests)."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import common
import stage_times

FAKE_REPRO = """
import time
print("Stage 'split' didn't change, skipping")
for stage in ("prune@sst2-none", "prune@sst2-mcap", "report"):
    print(f"Running stage '{stage}':", flush=True)
    time.sleep(0.2)
"""


def test_stage_times_follow_the_running_stage_lines(capsys):
    times, total, status = stage_times.timed_stages([sys.executable, "-c", FAKE_REPRO])
    assert status == 0
    assert [stage for stage, _ in times] == ["prune@sst2-none", "prune@sst2-mcap", "report"]
    assert all(seconds > 0.1 for _, seconds in times)  # each stage lasts until the next starts (sleep 0.2)
    assert total >= sum(seconds for _, seconds in times)
    markdown = stage_times.markdown(times, total, ["--force"])
    assert "| prune | 2 |" in markdown and "| report | 1 |" in markdown
    assert "didn't change" in capsys.readouterr().out  # dvc's output is passed through


def test_sections_are_joined_in_a_fixed_order(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "REPORTS", tmp_path)
    common.write_section("stage_times", "## (c) times", {"total_seconds": 1.0})
    common.write_section("trainer_throughput", "## (a) throughput", {"ratio": 1.1})
    text = (tmp_path / "benchmarks.md").read_text()
    assert text.startswith(common.TITLE) and text.index("## (a)") < text.index("## (c)")
    stored = json.loads((tmp_path / "benchmarks" / "trainer_throughput.json").read_text())
    assert stored["ratio"] == 1.1 and "flags" in stored["machine_record"]["cpu"]  # each section names its CPU


def test_stage_overhead_splits_the_stage_time_into_its_parts():
    import stage_overhead

    parts = {"interpreter": 0.5, "torch_transformers": 4.0, "stage_imports": 5.5, "load_and_save": 7.0,
             "shap_compile": 9.0}
    stage_times = {"total_seconds": 600.0,
                   "stages": {"prune@sst2-none": 10.0, "prune@cola-none": 11.0, "explain@sst2-none": 30.0}}
    text = stage_overhead.markdown(parts, stage_times, repeats=3)
    assert "| import torch + transformers (BERT modelling) | 3.5 |" in text
    assert "| the stage's other imports (mcap, pandas, scikit-learn, ...) | 1.5 |" in text
    assert "| load the pre-trained model, save it (safetensors + tokenizer) | 1.5 |" in text
    assert "each of the 3 stages of section (c), is about 0.3 of its 10.0 min" in text  # 3 x 5.5 s
    assert "each of the 1 explain stages adds 9.0 s" in text
