"""Stage transfer_scores@<task>-<strategy> (transfer.tasks × mcap.strategies): the scores the trained controllers of
a learned strategy give a task they never trained on, one per controller seed of mcap.seeds.

δ inference only, as the paper's transfer claim has it: the controller is applied to the task's pooled sentences,
the same computation its controller stage makes for the tasks of ``tasks``. A stage of its own, so that a new
transfer task adds this stage and its own pruning and fine-tuning, and retrains no controller.
"""

from mcap.cli import run_stage
from mcap.controller import ControllerSettings
from mcap.errors import McapError
from mcap.meta_training import (
    CONTROLLED,
    ITERATIVE,
    STRUCTURED,
    controller_scores,
    scores_record,
    task_pools,
)
from mcap.modeling import load_pretrained
from mcap.outputs import write_json
from mcap.patterns import load_pattern_cnn
from mcap.score_files import learned_scores_path
from mcap.splits import pooled_sentences


def main(params, args):
    if args.strategy not in CONTROLLED:
        raise McapError(f"params.yaml: 'mcap.strategies' lists {args.strategy!r}; the strategies with a controller "
                        f"stage are {', '.join(CONTROLLED)}")
    mcap, task = params.mcap, args.task
    iterative, structured = args.strategy == ITERATIVE, args.strategy == STRUCTURED
    model, tokenizer = load_pretrained(params.model.name_or_path, mcap.seeds[0])  # as the controller stage loads it
    frames = pooled_sentences([task], mcap.pool_examples)
    pool = task_pools(model, tokenizer, load_pattern_cnn(), frames, mcap.map_length)[task]
    by_seed = {}
    for seed in mcap.seeds:
        settings = ControllerSettings.of(mcap, params.prune.ratio, seed, iterative,
                                         params.train.max_seq_len if structured else None)
        by_seed[seed] = controller_scores(args.strategy, model, pool, settings, mcap.iterative_step)
    write_json(learned_scores_path(args.strategy, task, transfer=True),
               scores_record(task, mcap.train_tasks, by_seed, settings.neuron_group_size))


if __name__ == "__main__":
    run_stage(main, "task", "strategy")
