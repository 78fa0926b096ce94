"""Stage split: raw task files -> data/processed/<task>/{train,validation,test}.tsv."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.data import load_raw, resolve_tasks, split_task, task_specs, write_splits
from mcap.errors import McapError
from mcap.outputs import atomic_dir
from mcap.params import all_tasks, get, optional_count

OUT_DIR = Path("data/processed")


def main(params, args):
    specs = task_specs(get(params, "data.glue_dir", str), get(params, "data.extra_tasks", dict, {}))
    tasks = resolve_tasks(all_tasks(params), specs)
    fraction = get(params, "data.validation_fraction", float)
    if not 0 < fraction < 1:
        raise McapError(f"params.yaml: 'data.validation_fraction' must be in (0, 1), got {fraction}")
    # Read and check every task before writing anything: bad input leaves no partial output.
    raw = {spec.name: load_raw(spec) for spec in tasks}
    with atomic_dir(OUT_DIR) as staging:
        for name, (train, test) in raw.items():
            splits = split_task(
                train, test, fraction, get(params, "seed", int),
                optional_count(params, "data.max_train_examples"), optional_count(params, "data.max_eval_examples"),
            )
            stats = write_splits(splits, staging / name)
            print(f"{name}: " + ", ".join(f"{split} {s['rows']}" for split, s in stats.items()))


if __name__ == "__main__":
    run_stage(main)
