"""Stage meta_controller (``--variant mcap``), meta_controller_iterative (``--variant mcap_iterative``) or
meta_controller_structured (``--variant structured_mcap``).

Meta-train g(T, Φ) over mcap.train_tasks, once per seed of mcap.seeds, and write per task of ``tasks`` the
scores the strategy of the same name prunes with (a transfer task's come from the transfer_scores stage): head δ (``mcap``), the removal order of
pruning in steps of mcap.iterative_step with g re-fitted on the surviving heads after each step
(``mcap_iterative``), or δ of heads and of groups of mcap.neuron_group_size FFN neurons, trained to a
budget of encoder MACs (``structured_mcap``). Each strategy prunes with the controller whose seed is the run's ``seed``,
so varying ``seed`` varies the controller without rerunning this stage; diagnostics.json measures
how much the scores depend on the controller's seed.
"""

from pathlib import Path

import numpy as np
from safetensors.torch import save_file

from mcap.cli import run_stage
from mcap.controller import (
    ControllerSettings,
    controller_diagnostics,
    iterative_diagnostics,
    train_controller,
    train_iterative,
    unpruned_states,
)
from mcap.errors import McapError
from mcap.meta_training import (
    CONTROLLED,
    CONTROLLERS,
    ITERATIVE,
    STRUCTURED,
    controller_path,
    scores_record,
    task_pools,
    unpruned_probes,
)
from mcap.modeling import load_pretrained
from mcap.outputs import atomic_dir, write_json
from mcap.patterns import load_pattern_cnn
from mcap.score_files import learned_scores_path
from mcap.splits import read_pools
from mcap.tracking import log_history


def flat_scores(delta) -> np.ndarray:
    """Every unit's score in one array (the diagnostics compare scores across seeds and tasks)."""
    return np.concatenate([np.ravel(part) for part in delta]) if isinstance(delta, tuple) else delta.numpy()


def main(params, args):
    if args.variant not in CONTROLLED:
        raise McapError(f"stages/meta_controller.py: --variant must be one of {', '.join(CONTROLLED)}, got {args.variant!r}")
    report_dir = Path("reports") / args.variant / "controller"
    iterative, structured = args.variant == ITERATIVE, args.variant == STRUCTURED
    mcap, tasks, train_tasks = params.mcap, params.tasks, params.mcap_train_tasks()
    seed = mcap.seeds[0]  # the diagnostics' focus
    model, tokenizer = load_pretrained(params.model.name_or_path, seed)
    cnn = load_pattern_cnn()
    train = read_pools(tasks)
    pools = task_pools(model, tokenizer, cnn, train, mcap.map_length)
    if not iterative:  # mcap's probes: fitted once, on the unpruned model (train_iterative refits its own per step)
        probes = unpruned_probes(pools, train_tasks)
    histories, scores = {}, {}
    with atomic_dir(CONTROLLERS / args.variant) as staging:
        for controller_seed in mcap.seeds:
            settings = ControllerSettings.of(mcap, params.prune.ratio, controller_seed, iterative,
                                             params.train.max_seq_len if structured else None)
            if iterative:  # each step's controller: the transfer_scores stage replays the steps on another task
                steps, histories[controller_seed], by_task = train_iterative(model, cnn, pools, train_tasks, settings,
                                                                             mcap.iterative_step)
                for step, state in enumerate(steps):
                    save_file(state, str(staging / controller_path(args.variant, controller_seed, step).name))
            else:
                states = unpruned_states(pools, probes, settings.task_weight)
                controller, histories[controller_seed] = train_controller(model, cnn, pools, states, train_tasks, settings)
                by_task = {task: controller.importance(pools[task]) for task in tasks}
                save_file(controller.state_dict(), str(staging / controller_path(args.variant, controller_seed).name))
            scores[controller_seed] = by_task
    for task in tasks:
        write_json(learned_scores_path(args.variant, task), scores_record(
            task, train_tasks, {s: scores[s][task] for s in mcap.seeds}, settings.neuron_group_size))
    scores = {s: {task: flat_scores(delta) for task, delta in by_task.items()} for s, by_task in scores.items()}
    diagnose = iterative_diagnostics if iterative else controller_diagnostics
    write_json(report_dir / "diagnostics.json", diagnose(histories, scores, seed, train_tasks))
    log_history(report_dir, histories[seed])


if __name__ == "__main__":
    run_stage(main, "variant")
