"""Stage deploy@<task>-<strategy>-<seed>: one model pruned before fine-tuning, exported to ONNX, checked against
PyTorch and timed against its unpruned architecture in onnxruntime."""

from pathlib import Path

import torch

from mcap.cli import run_stage
from mcap.deploy import deploy_finetuned
from mcap.errors import McapError
from mcap.modeling import load_model
from mcap.outputs import atomic_dir, write_json
from mcap.splits import read_split


def main(params, args):
    deployed = params.deploy_strategies()
    if args.strategy not in deployed:
        raise McapError(f"deploy: strategy {args.strategy!r} is not in 'deploy.strategies' {deployed}")
    torch.set_num_threads(params.evaluate.threads)
    pair, run = f"{args.task}-{args.strategy}", f"seed-{args.seed}"
    model, tokenizer, _pruning = load_model(Path("models/finetuned") / pair / run)
    with atomic_dir(Path("models/deployed") / pair / run) as staging:
        metrics = deploy_finetuned(model, tokenizer, read_split(Path("data/processed") / args.task, "test"),
                                   params.evaluate, params.train.max_seq_len, staging / "model.onnx")
    write_json(Path("reports/deploy") / pair / f"{run}.json", metrics)


if __name__ == "__main__":
    run_stage(main, "task", "strategy", "seed")
