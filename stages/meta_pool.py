"""Stage meta_pool: the train sentences the meta-controllers learn from, per task of mcap.train_tasks (the first
mcap.pool_examples of its train split).

A stage of its own between split and the controllers: a new transfer task rewrites data/processed, but not these
files, so DVC retrains no controller.
"""

from mcap.cli import run_stage
from mcap.outputs import atomic_dir
from mcap.splits import POOL_DIR, pooled_sentences, write_splits


def main(params, args):
    with atomic_dir(POOL_DIR) as staging:
        write_splits(pooled_sentences(params.mcap_train_tasks(), params.mcap.pool_examples), staging)


if __name__ == "__main__":
    run_stage(main)
