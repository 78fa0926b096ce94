"""Stage deploy@<task>-<strategy>-<ratio>-<seed>: the models pruned before fine-tuning (one per pruning seed) and
fine-tuned at one seed, exported to ONNX and checked against PyTorch, in FP32 and INT8 (``int8``). Their speed is
their architecture's: the latency stage times each once in onnxruntime."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.deploy import deploy_finetuned
from mcap.errors import McapError
from mcap.grid import finetuned_seed_dir, model_name
from mcap.modeling import load_model
from mcap.outputs import atomic_dir, write_json
from mcap.splits import read_split


def main(params, args):
    deployed = params.deploy_strategies()
    if args.strategy not in deployed:
        raise McapError(f"deploy: strategy {args.strategy!r} is not in 'deploy.strategies' {deployed}")
    task, strategy, ratio, seed = args.task, args.strategy, float(args.ratio), int(args.seed)
    test = read_split(Path("data/processed") / task, "test")
    finetuned = finetuned_seed_dir(task, strategy, ratio, seed)
    records = {}
    with atomic_dir(Path("models/deployed") / task / model_name(strategy, ratio) / f"seed-{seed}") as staging:
        for model_dir in sorted(finetuned.glob("pruning-seed-*")):
            model, tokenizer, _pruning = load_model(model_dir)
            records[model_dir.name.removeprefix("pruning-seed-")] = deploy_finetuned(
                model, tokenizer, test, params.evaluate.threads, params.train.max_seq_len, staging / model_dir.name / "model.onnx",
                params.int8)
    write_json(Path("reports/deploy") / task / model_name(strategy, ratio) / f"seed-{seed}.json", records)


if __name__ == "__main__":
    run_stage(main, "task", "strategy", "ratio", "seed")
