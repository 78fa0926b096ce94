"""Stage latency@<task>: every pruned model of the task timed against its unpruned architecture on the task's test
sentences, with its FLOPs, parameters and MAC estimate: reports/latency/<task>.json.

Once per pruned architecture, not per fine-tuned model: time depends on the shapes the pruning left (and on the
zeros of unstructured pruning, which fine-tuning keeps), not on the weights' values or the fine-tuning seed.
"""

from pathlib import Path

import torch

from mcap.cli import run_stage
from mcap.devices import pick_device
from mcap.evaluate import architecture_metrics
from mcap.grid import PRUNED
from mcap.modeling import load_model, unpruned_twin
from mcap.outputs import write_json
from mcap.splits import read_split


def main(params, args):
    torch.set_num_threads(params.evaluate.threads)
    test = read_split(Path("data/processed") / args.task, "test")
    records = {}
    for pruned in sorted((PRUNED / args.task).glob("*/seed-*")):  # <strategy>-<ratio>/seed-<pruning seed>
        model, tokenizer, pruning = load_model(pruned)
        model = model.to(pick_device())
        records[f"{pruned.parent.name}/{pruned.name}"] = {
            "prune_ratio": pruning["ratio"],
            **architecture_metrics(model, tokenizer, test, params.evaluate, params.train.max_seq_len,
                                   reference=unpruned_twin(model))}
    write_json(Path("reports/latency") / f"{args.task}.json", records)


if __name__ == "__main__":
    run_stage(main, "task")
