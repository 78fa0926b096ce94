"""Stage evaluate@<task>-<strategy>-<seed>: test quality, latency, speed-up, FLOPs and the MAC-proportional speed-up estimate of one model."""

from pathlib import Path

import torch

from mcap.cli import run_stage
from mcap.evaluate import evaluate_model
from mcap.modeling import load_model, pick_device, unpruned_twin
from mcap.outputs import write_json
from mcap.splits import read_split


def main(params, args):
    pair = f"{args.task}-{args.strategy}"
    torch.set_num_threads(params.evaluate.threads)
    model, tokenizer, pruning = load_model(Path("models/finetuned") / pair / f"seed-{args.seed}")
    test = read_split(Path("data/processed") / args.task, "test")
    model = model.to(pick_device())
    metrics = {"prune_ratio": pruning["ratio"],  # what the model was pruned at, for the sweep
               **evaluate_model(model, tokenizer, test, params.evaluate, params.train.max_seq_len,
                                reference=unpruned_twin(model))}
    write_json(Path("reports/evaluate") / pair / f"seed-{args.seed}.json", metrics)


if __name__ == "__main__":
    run_stage(main, "task", "strategy", "seed")
