"""Stage controller@<strategy>-<ratio> (mcap.strategies × prune.ratios): meta-train a learned strategy's g(T, Φ) over
mcap.train_tasks at one budget, once per seed of mcap.seeds, and write per train task the scores the strategy prunes
with: head δ (``mcap``), the removal order of pruning in steps of mcap.iterative_step with g re-fitted on the surviving
heads after each step (``mcap_iterative``), or δ of heads and of groups of mcap.neuron_group_size FFN neurons,
trained to a budget of encoder MACs (``structured_mcap``), or δ of head masks learned on the task loss while a copy of
the model adapts (``mcap_joint``, :mod:`mcap.joint_controller`). A pruning seed prunes with the controller of the same seed,
so varying the pruning seeds varies the controller without rerunning this stage; diagnostics.json measures how much
the scores depend on the controller's seed. A transfer task's scores are inferred by the prune stage.
"""


import numpy as np

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
from mcap.joint_controller import JointSettings, train_joint
from mcap.meta_training import (
    CONTROLLED,
    CONTROLLERS,
    ITERATIVE,
    JOINT,
    STRUCTURED,
    controller_path,
    save_controller,
    scores_record,
    task_pools,
    unpruned_probes,
)
from mcap.modeling import load_pretrained
from mcap.outputs import atomic_dir, write_json
from mcap.patterns import load_pattern_cnn
from mcap.score_files import CONTROLLER_REPORTS, learned_scores_path
from mcap.splits import read_pools
from mcap.tracking import log_history
from mcap.training import encode


def flat_scores(delta) -> np.ndarray:
    """Every unit's score in one array (the diagnostics compare scores across seeds and tasks)."""
    parts = delta if isinstance(delta, tuple) else (delta,)
    return np.concatenate([np.ravel(part.cpu().numpy()) for part in parts])


def main(params, args):
    if args.strategy not in CONTROLLED:
        raise McapError(f"params.yaml: 'mcap.strategies' lists {args.strategy!r}; the strategies with a controller "
                        f"are {', '.join(CONTROLLED)}")
    strategy, ratio = args.strategy, float(args.ratio)
    report_dir = CONTROLLER_REPORTS / strategy / str(ratio)
    iterative, structured, joint = strategy == ITERATIVE, strategy == STRUCTURED, strategy == JOINT
    mcap, train_tasks = params.mcap, params.mcap.train_tasks
    seed = mcap.seeds[0]  # the diagnostics' focus
    model, tokenizer = load_pretrained(params.model.name_or_path, seed)
    cnn = load_pattern_cnn()
    frames = read_pools(train_tasks)
    pools = task_pools(model, tokenizer, cnn, frames, mcap.map_length)
    if not (iterative or joint):  # mcap's probes: fitted once, on the unpruned model (train_iterative refits its own)
        probes = unpruned_probes(pools, train_tasks)
    if joint:  # the cross-entropy reads the sentences whole, as fine-tuning does
        encoded = {task: encode(tokenizer, frame, params.train.max_seq_len) for task, frame in frames.items()}
        kl_weight = JointSettings.read(params.raw).kl_weight
    histories, scores = {}, {}
    with atomic_dir(CONTROLLERS / strategy / str(ratio)) as staging:
        for controller_seed in mcap.seeds:
            settings = ControllerSettings.of(mcap, ratio, controller_seed, iterative,
                                             params.train.max_seq_len if structured else None)
            if iterative:  # each step's controller: the prune stage replays the steps on a transfer task
                steps, histories[controller_seed], by_task = train_iterative(model, cnn, pools, train_tasks, settings,
                                                                             mcap.iterative_step)
                for step, state in enumerate(steps):
                    save_controller(state, staging / controller_path(strategy, ratio, controller_seed, step).name)
            else:
                if joint:
                    controller, histories[controller_seed], by_task = train_joint(
                        params.model.name_or_path, tokenizer, pools, encoded, settings, params.train, kl_weight)
                else:
                    states = unpruned_states(pools, probes, settings.task_weight)
                    controller, histories[controller_seed] = train_controller(model, cnn, pools, states, train_tasks,
                                                                              settings)
                    by_task = {task: controller.importance(pools[task]) for task in train_tasks}
                save_controller(controller.state_dict(), staging / controller_path(strategy, ratio, controller_seed).name)
            scores[controller_seed] = by_task
    for task in train_tasks:
        write_json(learned_scores_path(strategy, ratio, task), scores_record(
            task, train_tasks, {s: scores[s][task] for s in mcap.seeds}, settings.neuron_group_size))
    scores = {s: {task: flat_scores(delta) for task, delta in by_task.items()} for s, by_task in scores.items()}
    diagnose = iterative_diagnostics if iterative else controller_diagnostics
    write_json(report_dir / "diagnostics.json", diagnose(histories, scores, seed, train_tasks))
    log_history(report_dir, histories[seed])


if __name__ == "__main__":
    run_stage(main, "strategy", "ratio")
