"""Stage finetune@<task>-<strategy>-<ratio>-<seed>: fine-tune the task's pruned models of one strategy and ratio over
the learning-rate grid at one fine-tuning seed, one per pruning seed the prune stage wrote, and score each on every
test sentence: reports/cells/<task>/<strategy>-<ratio>/seed-<seed>.json, the grid's cells."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.devices import pick_device, precision
from mcap.distributed import leave_distributed_run, relaunch_under_accelerate
from mcap.evaluate import machine_record
from mcap.grid import PRUNED, cell_path, finetuned_dir, finetuned_seed_dir, model_name
from mcap.modeling import load_model, save_model
from mcap.outputs import atomic_dir, write_json
from mcap.splits import read_split
from mcap.tracking import log_history
from mcap.training import evaluate, finetune_grid, scoring_loader


def main(params, args):
    if relaunch_under_accelerate(params.train.num_processes, params.train.batch_size):
        return
    task, strategy, ratio, seed = args.task, args.strategy, float(args.ratio), int(args.seed)
    name, task_dir, settings = model_name(strategy, ratio), Path("data/processed") / task, params.train
    train, validation, test = (read_split(task_dir, split) for split in ("train", "validation", "test"))
    results = {}  # pruning seed: (fine-tuned result, tokenizer, pruning record); every process trains every seed
    for pruned in sorted((PRUNED / task / name).glob("seed-*")):
        _model, tokenizer, pruning = load_model(pruned)
        results[int(pruned.name.removeprefix("seed-"))] = (finetune_grid(
            lambda pruned=pruned: load_model(pruned)[0], train, validation, tokenizer, settings, seed,
            keep_zeros=pruning.get("kind") == "unstructured"), tokenizer, pruning)
    leave_distributed_run()
    if not all(result.is_main_process for result, _tokenizer, _pruning in results.values()):
        return  # under `accelerate launch` only the main process writes outputs
    runs = {}
    with atomic_dir(finetuned_seed_dir(task, strategy, ratio, seed)) as staging:
        for pruning_seed, (result, tokenizer, pruning) in results.items():
            out = staging / finetuned_dir(task, strategy, ratio, seed, pruning_seed).name
            save_model(result.model, tokenizer, out, pruning)
            scores = evaluate(result.model, scoring_loader(tokenizer, test, settings.batch_size, settings.max_seq_len))
            best = result.histories[result.learning_rate][-1]
            runs[str(pruning_seed)] = {"test": scores, "learning_rate": result.learning_rate,
                                       "validation": {key: best[f"val_{key}"] for key in ("mcc", "accuracy", "loss")}}
            curves = [{"train/loss": r["train_loss"], "val/loss": r["val_loss"], "val/accuracy": r["val_accuracy"],
                       "val/mcc": r["val_mcc"]} for r in result.histories[result.learning_rate]]
            log_history(Path("reports/finetune") / task / name / f"seed-{seed}" / out.name, curves,
                        {"learning_rate": result.learning_rate})
    write_json(cell_path(task, strategy, ratio, seed),
               {"task": task, "strategy": strategy, "ratio": ratio, "finetune_seed": seed, "test_sentences": len(test),
                "device": pick_device().type, "precision": precision(pick_device()),
                "machine": machine_record(pick_device()), "runs": runs})


if __name__ == "__main__":
    run_stage(main, "task", "strategy", "ratio", "seed")
