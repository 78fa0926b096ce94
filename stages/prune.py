"""Stage prune@<task>-<strategy>: prune the pre-trained model before fine-tuning."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.data import read_split
from mcap.modeling import load_pretrained, save_model
from mcap.outputs import atomic_dir, write_json
from mcap.params import get
from mcap.pruning import check_ratio, plot_head_map, prune_model
from mcap.strategies import PruneContext, get_strategy


def main(params, args):
    pair = f"{args.task}-{args.strategy}"
    get_strategy(args.strategy)  # fail on an unknown name before loading anything
    seed = get(params, "seed", int)
    model, tokenizer = load_pretrained(get(params, "model.name_or_path", str), seed)
    context = PruneContext(
        model=model, tokenizer=tokenizer, task=args.task,
        train=read_split(Path("data/processed") / args.task, "train"),
        ratio=check_ratio(get(params, "prune.ratio")), seed=seed, options=get(params, "prune", dict),
        max_seq_len=get(params, "train.max_seq_len", int), batch_size=get(params, "train.batch_size", int),
    )
    record = prune_model(args.strategy, context)
    with atomic_dir(Path("models/pruned") / pair) as staging:
        save_model(model, tokenizer, staging, record)
    report_dir = Path("reports/prune") / pair
    write_json(report_dir / "heads.json", record)
    plot_head_map(record, report_dir / "heads.png")


if __name__ == "__main__":
    run_stage(main, "task", "strategy")
