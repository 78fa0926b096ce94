"""Stage split: raw task files -> data/processed/<task>/{train,validation,test}.tsv and reports/split/leakage.json."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.data import load_raw, resolve_tasks, split_task, task_specs, validation_leakage
from mcap.errors import McapError
from mcap.outputs import atomic_dir, write_json
from mcap.params import all_tasks, get, optional_count
from mcap.splits import write_splits

OUT_DIR = Path("data/processed")
LEAKAGE = Path("reports/split/leakage.json")


def main(params, args):
    specs = task_specs(get(params, "data.glue_dir", str), get(params, "data.extra_tasks", dict, {}))
    tasks = resolve_tasks(all_tasks(params), specs)
    fraction = get(params, "data.validation_fraction", float)
    if not 0 < fraction < 1:
        raise McapError(f"params.yaml: 'data.validation_fraction' must be in (0, 1), got {fraction}")
    method, seed = get(params, "data.split", str), get(params, "data.seed", int)
    # Read and check every task before writing anything: bad input leaves no partial output.
    raw = {spec.name: load_raw(spec) for spec in tasks}
    with atomic_dir(OUT_DIR) as staging:
        for name, (train, test) in raw.items():
            splits = split_task(train, test, fraction, seed, optional_count(params, "data.max_train_examples"),
                                optional_count(params, "data.max_eval_examples"), method)
            stats = write_splits(splits, staging / name)
            print(f"{name}: " + ", ".join(f"{split} {s['rows']}" for split, s in stats.items()))
    # Before caps: the share of the validation split's phrases that occur inside a train phrase, per method.
    write_json(LEAKAGE, {name: {"validation_inside_train": validation_leakage(train, fraction, seed)}
                         for name, (train, _test) in raw.items()})


if __name__ == "__main__":
    run_stage(main)
