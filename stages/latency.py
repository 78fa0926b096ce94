"""Stage latency@<task>: every pruned model of the task timed against its unpruned architecture on the task's test
sentences, with its FLOPs, parameters and MAC estimate: reports/latency/<task>.json.

Once per pruned architecture, not per fine-tuned model: time depends on the shapes the pruning left (and on the
zeros of unstructured pruning, which fine-tuning keeps), not on the weights' values or the fine-tuning seed. The
architectures of ``deploy.strategies`` are timed in onnxruntime too, in FP32 and INT8 (``int8``), against the
unpruned FP32 model: the deploy stage checks each fine-tuned model's export and leaves its speed to this one.
"""

from pathlib import Path

import torch

from mcap.cli import run_stage
from mcap.deploy import architecture_onnx_speedups
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
        onnx = ({"onnx": architecture_onnx_speedups(model, tokenizer, test, params.evaluate, params.train.max_seq_len,
                                                    params.int8)}
                if pruning["strategy"] in params.deploy.strategies else {})
        model = model.to(pick_device())
        records[f"{pruned.parent.name}/{pruned.name}"] = {
            "prune_ratio": pruning["ratio"],
            **architecture_metrics(model, tokenizer, test, params.evaluate, params.train.max_seq_len,
                                   reference=unpruned_twin(model)), **onnx}
    write_json(Path("reports/latency") / f"{args.task}.json", records)


if __name__ == "__main__":
    run_stage(main, "task")
