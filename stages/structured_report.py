"""Stage structured_report@<task> (post_prune.tasks): reports/structured/<task>.{md,csv,png}, structured pruning
before and after fine-tuning beside the head-only strategies, and <task>-reconstruction.csv, each reconstruction
method against none and the per-unit scales, paired on the same pruned model."""

import json
from pathlib import Path

from mcap.cli import run_stage
from mcap.post_prune_files import post_prune_results
from mcap.structured_report import (
    after_finetuning_rows,
    before_finetuning_rows,
    plot_pareto,
    reconstruction_rows,
    render_markdown,
    structured_table,
    timing_cpu,
)

REPORTS = Path("reports")


def main(params, args):
    task, seeds, samples, deployed = args.task, params.seeds, params.prune.seeds, params.deploy_strategies()
    after = {task: REPORTS / "post_prune" / task}
    latency, after_latency = (json.loads((REPORTS / stage / f"{task}.json").read_text())
                              for stage in ("latency", "post_prune_latency"))
    cpu = timing_cpu([record["machine"] for record in [*latency.values(), *after_latency.values()]])
    table = structured_table(
        before_finetuning_rows(REPORTS, [task], params.strategies, deployed, params.prune.ratios, seeds)
        + after_finetuning_rows(after, "structured_gradient", seeds, samples, {task: after_latency})
        + [row for strategy in params.post_prune.learned for row in after_finetuning_rows(
            {task: REPORTS / "post_prune" / f"{task}-{strategy}"}, strategy, seeds, samples, {task: after_latency})])
    post = post_prune_results(after[task], seeds[:1], samples[:1])[seeds[0], samples[0]]
    tuning = (f"the best on validation of no reconstruction and {', '.join(params.post_prune.reconstructions)}"
              if params.post_prune.reconstructions else "no reconstruction")
    rearranged = ", the masks rearranged on each layer's Fisher block" if post.get("mask_rearrangement") else ""
    learned = "".join(f" or, at each budget, the scores of the {strategy} controller of pruning seed {params.prune.seeds[0]} "
                      "trained at that budget (post_prune_learned)" for strategy in params.post_prune.learned)
    recoveries = params.post_prune.recoveries
    recovered = (f"; at {', '.join(f'{r:.0%}' for r in params.post_prune.recovery_mac_ratios)} of MACs removed, that "
                 f"model also retrained for one pass over the train sentences by {' and '.join(recoveries)} "
                 "(mcap.recovery: distilled from the unpruned model, or on the labels; a mode of its own)"
                 if recoveries and params.post_prune.recovery_mac_ratios else "")
    setup = (
        f"Model `{params.model.name_or_path}`, {params.train.epochs} epoch(s) of fine-tuning, "
        f"{params.data.caps()} (null = full data; the test split is "
        f"capped too), fine-tuning seeds {seeds} (n runs per row; ± is the std over them, none with one seed: then "
        f"no difference here is shown to exceed the noise). Timed on {cpu} with {params.evaluate.threads} threads. "
        f"MACs: of the encoder, counted at {params.train.max_seq_len} tokens. "
        f"Before fine-tuning: the prune stage at prune.ratios {params.prune.ratios} (the fraction of heads for head "
        "strategies, of MACs for structured ones), then fine-tuned; speed-up over the unpruned architecture in "
        f"PyTorch, and in onnxruntime for {', '.join(deployed) or 'none of them'} (deploy.strategies: each pruned "
        "architecture timed once by the latency stage; each fine-tuned model's ONNX checked by the deploy stage, as "
        "below). After fine-tuning: the post_prune stage, Fisher importance on "
        f"{post['fisher_examples']} train sentences drawn by each pruning seed {samples} (structured_gradient"
        f"{rearranged}){learned}, then {tuning} "
        f"(mcap.reconstruction), no retraining{recovered}; each model exported to "
        "ONNX (max |Δ logit| < 1e-4 against PyTorch on every test sentence); where int8.enabled, every ONNX model is "
        "also quantised to INT8 (its own rows); each architecture left timed once by the post_prune_latency stage "
        "against the unpruned one in the same runtime (INT8 in onnxruntime against the unpruned FP32 model). "
        "Speed-up: median per-repetition time ratio, the two models timed alternately on test batches. ΔMCC: paired "
        "with the unpruned FP32 model of the same fine-tuning seed, 95% bootstrap interval over the fine-tuning seeds "
        "and the pruning seeds (none with one fine-tuning seed)."
    )
    reconstructions = reconstruction_rows(after, "structured_gradient", seeds, samples)
    out = REPORTS / "structured"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{task}.md").write_text(render_markdown(table, setup, reconstructions))
    table.to_csv(out / f"{task}.csv", index=False, float_format="%.6g")
    reconstructions.to_csv(out / f"{task}-reconstruction.csv", index=False, float_format="%.6g")
    plot_pareto(table, out / f"{task}.png")


if __name__ == "__main__":
    run_stage(main, "task")
