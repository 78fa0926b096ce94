"""Stage prune@<task>-<strategy> (prune.strategies) or prune_mcap@<task>-<strategy> (``--learned``: mcap.strategies,
the strategies that prune with a meta-controller's scores): prune the pre-trained model before fine-tuning. The
transfer tasks' stages pass ``--transfer``: a learned strategy reads the scores the transfer_scores stage inferred."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.errors import McapError
from mcap.modeling import load_pretrained, save_model
from mcap.outputs import atomic_dir, write_json
from mcap.pruning import plot_head_map, prune_model
from mcap.splits import read_split
from mcap.strategies import PruneContext, get_strategy
from mcap.strategies.base import LearnedStrategy


def main(params, args):
    pair = f"{args.task}-{args.strategy}"
    learned = isinstance(get_strategy(args.strategy), LearnedStrategy)  # fails on an unknown name first
    # Only the prune_mcap stages depend on the learned scores: a learned strategy elsewhere would read them unseen.
    if learned and not args.learned:
        raise McapError(f"params.yaml: strategy {args.strategy!r} prunes with a meta-controller's scores: list it in "
                        "'mcap.strategies', not in 'prune.strategies' or 'transfer.strategies'")
    if args.learned and not learned:
        raise McapError(f"params.yaml: 'mcap.strategies' lists {args.strategy!r}, which learns no scores upstream: "
                        "list it in 'prune.strategies'")
    seed = params.seed
    model, tokenizer = load_pretrained(params.model.name_or_path, seed)
    context = PruneContext.of(params, model, tokenizer, args.task, read_split(Path("data/processed") / args.task, "train"),
                              seed, transfer=args.transfer)
    record = prune_model(args.strategy, context)
    with atomic_dir(Path("models/pruned") / pair) as staging:
        save_model(model, tokenizer, staging, record)
    report_dir = Path("reports/prune") / pair
    write_json(report_dir / "heads.json", record)
    plot_head_map(record, report_dir / "heads.png")


if __name__ == "__main__":
    run_stage(main, "task", "strategy", flags=("learned", "transfer"))
