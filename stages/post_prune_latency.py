"""Stage post_prune_latency@<task> (post_prune.tasks): every architecture the post_prune and post_prune_learned
stages of the task left (each budget's layout, and the unpruned one), timed once against the unpruned architecture in
PyTorch and onnxruntime, FP32 and INT8, on this machine: reports/post_prune_latency/<task>.json, by layout."""

from pathlib import Path

import torch

from mcap.architecture_latency import post_prune_layouts, time_layouts
from mcap.cli import run_stage
from mcap.modeling import load_pretrained
from mcap.outputs import write_json
from mcap.post_prune_files import post_prune_results
from mcap.splits import read_split

RESULTS = Path("reports/post_prune")


def main(params, args):
    torch.set_num_threads(params.evaluate.threads)
    task = args.task
    folders = [RESULTS / task, *(RESULTS / f"{task}-{strategy}" for strategy in params.post_prune.learned)]
    results = [result for folder in folders
               for result in post_prune_results(folder, params.seeds, params.prune.seeds).values()]
    unpruned, tokenizer = load_pretrained(params.model.name_or_path, params.seeds[0])
    unpruned = unpruned.cpu()  # timed on the CPU in both runtimes, as the ONNX models are deployed
    records = time_layouts(unpruned, tokenizer, post_prune_layouts(results), read_split(Path("data/processed") / task,
                           "test"), params.evaluate, params.train.max_seq_len, params.int8)
    write_json(Path("reports/post_prune_latency") / f"{task}.json", records)


if __name__ == "__main__":
    run_stage(main, "task")
