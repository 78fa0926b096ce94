"""Stage finetune@<task>-<strategy>-<seed>: fine-tune a pruned model over the learning-rate grid."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.distributed import relaunch_under_accelerate
from mcap.modeling import load_model, save_model
from mcap.outputs import atomic_dir
from mcap.splits import read_split
from mcap.tracking import log_history
from mcap.training import finetune_grid


def main(params, args):
    if relaunch_under_accelerate(params.train.num_processes, params.train.batch_size):
        return
    pair, run = f"{args.task}-{args.strategy}", f"seed-{args.seed}"
    pruned_dir, task_dir = Path("models/pruned") / pair, Path("data/processed") / args.task
    _model, tokenizer, pruning = load_model(pruned_dir)
    result = finetune_grid(
        lambda: load_model(pruned_dir)[0], read_split(task_dir, "train"), read_split(task_dir, "validation"),
        tokenizer, params.train, int(args.seed), keep_zeros=pruning.get("kind") == "unstructured",
    )
    if not result.is_main_process:
        return
    with atomic_dir(Path("models/finetuned") / pair / run) as staging:
        save_model(result.model, tokenizer, staging, pruning)
    grid = {f"lr_{rate:g}/val_{key}": history[-1][f"val_{key}"]
            for rate, history in result.histories.items() for key in ("accuracy", "mcc", "loss")}
    curves = [{"train/loss": r["train_loss"], "val/loss": r["val_loss"], "val/accuracy": r["val_accuracy"],
               "val/mcc": r["val_mcc"]} for r in result.histories[result.learning_rate]]
    log_history(Path("reports/finetune") / pair / run, curves, {"learning_rate": result.learning_rate, **grid})


if __name__ == "__main__":
    run_stage(main, "task", "strategy", "seed")
