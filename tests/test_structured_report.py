"""The structured comparison's targets: read off the table, per runtime, within the MCC loss."""

import math

from mcap.structured_report import render_markdown, structured_table, target_lines


def row(mode: str, ratio: float, delta: float, torch_b32: float, onnx_b32: float = math.nan, strategy="structured_gradient"):
    return {"task": "sst2", "strategy": strategy, "mode": mode, "mac_ratio": ratio, "n": 2, "mcc_mean": 0.8 + delta,
            "mcc_std": 0.01, "mcc_delta": delta, "speedup_torch_b32": torch_b32, "speedup_onnx_b32": onnx_b32,
            "speedup_torch_b1": 1.0, "speedup_onnx_b1": 1.0, "mcc_without_tuning_mean": math.nan,
            "mcc_without_rearrangement_mean": math.nan}


def test_a_target_is_reached_by_the_fastest_structured_run_within_the_mcc_loss():
    table = structured_table([
        row("", 0.0, 0.0, 1.0, strategy="none"),
        row("after", 0.3, -0.005, 1.6, 1.4),   # within 1 point: 1.6x in PyTorch
        row("after", 0.6, -0.025, 2.3, 2.1),   # within 3 points: above 2x in both
        row("before", 0.7, -0.001, 9.0, strategy="head_random"),  # head-only rows never count
    ])
    one_point, three_points = target_lines(table)
    assert "PyTorch: reached, best 1.60×" in one_point and "onnxruntime: not reached, best 1.40×" in one_point
    assert "PyTorch: reached, best 2.30×" in three_points and "onnxruntime: reached, best 2.10×" in three_points
    markdown = render_markdown(table, "setup")
    assert markdown.count("| structured_gradient |") == 2 and "| head_random | before fine-tuning | 70% |" in markdown


def test_no_structured_run_within_the_loss_is_said_so():
    table = structured_table([row("after", 0.5, -0.2, 3.0, 3.0)])
    assert all("no run within the loss" in line for line in target_lines(table))


def test_no_target_is_read_off_a_model_that_has_not_learnt_its_task():
    table = structured_table([row("", 0.0, 0.0, 1.0, strategy="none") | {"mcc_mean": 0.0},
                              row("after", 0.6, 0.0, 2.2, 1.5) | {"mcc_mean": 0.0}])
    (line,) = target_lines(table)
    assert "has not learnt the task" in line and "reached" not in line


def test_after_fine_tuning_rows_average_each_budgets_mcc_with_and_without_each_step_over_the_seeds(tmp_path):
    import json

    from mcap.structured_report import after_finetuning_rows

    def budget(mcc, untuned, searched):
        speedup = {f"{runtime}_batch_{size}": {"median": 1.5} for runtime in ("torch", "onnx") for size in (1, 32)}
        return {"mac_ratio": 0.4, "test": {"mcc": mcc}, "test_without_tuning": {"mcc": untuned},
                "test_without_rearrangement": {"mcc": searched}, "speedup": speedup}

    for seed, (unpruned, mcc, untuned, searched) in {42: (0.8, 0.78, 0.76, 0.70), 43: (0.9, 0.86, 0.84, 0.80)}.items():
        (tmp_path / f"seed-{seed}.json").write_text(json.dumps({"unpruned": {"test": {"mcc": unpruned}},
                                                                "budgets": [budget(mcc, untuned, searched)]}))
    [row] = after_finetuning_rows({"sst2": tmp_path}, "structured_gradient", [42, 43])
    assert row["n"] == 2 and math.isclose(row["mcc_mean"], 0.82) and math.isclose(row["mcc_delta"], 0.82 - 0.85)
    assert math.isclose(row["mcc_without_tuning_mean"], 0.80) and math.isclose(row["mcc_without_rearrangement_mean"], 0.75)
    assert row["mode"] == "after" and row["speedup_onnx_b32"] == 1.5
