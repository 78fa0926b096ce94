"""Stage evaluate@<task>-<strategy>-<seed>: test quality, latency, speed-up, FLOPs and the MAC-proportional speed-up estimate of one model."""

from pathlib import Path

import torch

from mcap.cli import run_stage
from mcap.evaluate import EvaluateSettings, evaluate_model
from mcap.modeling import load_model, pick_device, unpruned_twin
from mcap.outputs import write_json
from mcap.params import get
from mcap.splits import read_split


def main(params, args):
    pair = f"{args.task}-{args.strategy}"
    torch.set_num_threads(get(params, "evaluate.threads", int))
    model, tokenizer, pruning = load_model(Path("models/finetuned") / pair / f"seed-{args.seed}")
    settings = EvaluateSettings(
        batch_sizes=get(params, "evaluate.batch_sizes", list), warmup=get(params, "evaluate.warmup", int),
        repetitions=get(params, "evaluate.repetitions", int), flops_seq_len=get(params, "evaluate.flops_seq_len", int),
        max_seq_len=get(params, "train.max_seq_len", int),
    )
    test = read_split(Path("data/processed") / args.task, "test")
    model = model.to(pick_device())
    metrics = {"prune_ratio": pruning["ratio"],  # what the model was pruned at, for the sweep
               **evaluate_model(model, tokenizer, test, settings, reference=unpruned_twin(model))}
    write_json(Path("reports/evaluate") / pair / f"seed-{args.seed}.json", metrics)


if __name__ == "__main__":
    run_stage(main, "task", "strategy", "seed")
