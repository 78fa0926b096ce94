"""Stage split: raw task files -> data/processed/<task>/{train,validation,test}.tsv and reports/split/leakage.json."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.data import load_raw, resolve_tasks, split_task, task_specs, validation_leakage
from mcap.errors import McapError
from mcap.outputs import atomic_dir, write_json
from mcap.splits import write_splits

OUT_DIR = Path("data/processed")
LEAKAGE = Path("reports/split/leakage.json")


def main(params, args):
    data = params.data
    specs = task_specs(data.glue_dir, data.extra_tasks)
    tasks = resolve_tasks(params.tasks, specs)
    unknown = sorted(set(data.task_train_examples) - {spec.name for spec in tasks})
    if unknown:
        raise McapError(f"params.yaml: 'data.task_train_examples' names {unknown}, which are not among the tasks "
                        f"{[spec.name for spec in tasks]} ('tasks')")
    # Read and check every task before writing anything: bad input leaves no partial output.
    raw = {spec.name: load_raw(spec) for spec in tasks}
    with atomic_dir(OUT_DIR) as staging:
        for name, (train, test) in raw.items():
            splits = split_task(train, test, data.validation_fraction, data.seed, data.train_examples(name),
                                data.max_validation_examples, data.max_test_examples, data.split)
            stats = write_splits(splits, staging / name)
            print(f"{name}: " + ", ".join(f"{split} {s['rows']}" for split, s in stats.items()))
    # Before caps: the share of the validation split's phrases that occur inside a train phrase, per method.
    write_json(LEAKAGE, {name: {"validation_inside_train": validation_leakage(train, data.validation_fraction, data.seed)}
                         for name, (train, _test) in raw.items()})


if __name__ == "__main__":
    run_stage(main)
