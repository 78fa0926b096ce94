"""Stage meta_controller_budgets@<strategy> (post_prune.learned): the structured meta-controller of the first pruning
seed trained on mcap.train_tasks once per budget of post_prune.mac_ratios, for post_prune_learned.

A controller trained at one budget ranks the units for that budget: cut at another, its order is not what it
learned. Each budget of the after-fine-tuning sweep is therefore ranked by a controller trained at it. The
diagnostics record, per budget, the objective's change over training and how many heads and FFN neurons the
controller's scores remove for each task.
"""

from pathlib import Path

from mcap.budget import UnitCosts
from mcap.cli import run_stage
from mcap.controller import ControllerSettings, objective_change, train_controller, unpruned_states
from mcap.errors import McapError
from mcap.meta_training import save_controller, task_pools, unpruned_probes
from mcap.modeling import load_pretrained
from mcap.outputs import atomic_dir, write_json
from mcap.patterns import load_pattern_cnn
from mcap.score_files import budget_scores_path
from mcap.splits import read_pools
from mcap.structured import budget_key, learned_scores_json, select_learned

STRUCTURED = "structured_mcap"  # the meta-controller that scores heads and FFN neuron groups


def main(params, args):
    if args.strategy != STRUCTURED:
        raise McapError(f"params.yaml: 'post_prune.learned' lists {args.strategy!r}; it takes the structured "
                        f"meta-controllers, which score heads and FFN neuron groups: {STRUCTURED}")
    mcap, train_tasks, seed = params.mcap, params.mcap_train_tasks(), params.prune.seeds[0]
    tasks = train_tasks  # the tasks it scores: those it trains on
    model, tokenizer = load_pretrained(params.model.name_or_path, seed)
    cnn = load_pattern_cnn()
    pools = task_pools(model, tokenizer, cnn, read_pools(tasks), mcap.map_length)
    states = unpruned_states(pools, unpruned_probes(pools, train_tasks), mcap.task_weight)
    costs, width = UnitCosts.of(model.config, params.train.max_seq_len), model.config.intermediate_size
    by_budget, learning = {}, {}
    with atomic_dir(Path("models/meta_controller_budgets") / args.strategy) as staging:
        for ratio in params.post_prune.mac_ratios:
            settings = ControllerSettings.of(mcap, ratio, seed, mac_seq_len=params.train.max_seq_len)
            controller, history = train_controller(model, cnn, pools, states, train_tasks, settings)
            scores = {task: learned_scores_json(*controller.importance(pools[task]), mcap.neuron_group_size)
                      for task in tasks}
            by_budget[budget_key(ratio)] = scores
            learning[budget_key(ratio)] = {**objective_change(history), "removed": {
                task: select_learned(scores[task], width, costs, ratio).composition() for task in tasks}}
            save_controller(controller.state_dict(), staging / f"controller-macs-removed-{budget_key(ratio)}.safetensors")
    for task in tasks:
        write_json(budget_scores_path(args.strategy, task), {
            "task": task, "meta_trained_on": train_tasks, "seed": seed,
            "by_budget": {key: scores[task] for key, scores in by_budget.items()},
        })
    write_json(Path("reports") / args.strategy / "controller_budgets" / "diagnostics.json", {"seed": seed, "by_budget": learning})


if __name__ == "__main__":
    run_stage(main, "strategy")
