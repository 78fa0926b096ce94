"""The structured comparison's targets: read off the table, per runtime, within the MCC loss."""

import math

from mcap.structured_report import render_markdown, structured_table, target_lines


def row(mode: str, ratio: float, delta: float, torch_b32: float, onnx_b32: float = math.nan, strategy="structured_gradient"):
    return {"task": "sst2", "strategy": strategy, "mode": mode, "mac_ratio": ratio, "n": 2, "mcc_mean": 0.8 + delta,
            "mcc_std": 0.01, "mcc_delta": delta, "speedup_torch_b32": torch_b32, "speedup_onnx_b32": onnx_b32,
            "speedup_torch_b1": 1.0, "speedup_onnx_b1": 1.0, "mcc_without_tuning_mean": math.nan}


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
