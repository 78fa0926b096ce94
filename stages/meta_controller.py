"""Stage meta_controller (``--variant mcap``) or meta_controller_iterative (``--variant mcap_iterative``).

Meta-train g(T, Φ) over mcap.train_tasks, once per seed of mcap.seeds, and write per task the
head scores the strategy of the same name prunes with: δ (``mcap``), or the removal order of
pruning in steps of mcap.iterative_step with g re-fitted on the surviving heads after each step
(``mcap_iterative``). Each strategy prunes with the controller whose seed is the run's ``seed``,
so varying ``seed`` varies the controller without rerunning this stage; diagnostics.json measures
how much the scores depend on the controller's seed.
"""

from pathlib import Path

from safetensors.torch import load_file, save_file

from mcap.attention_maps import extract_maps
from mcap.cli import run_stage
from mcap.controller import (
    ControllerSettings,
    build_pool,
    controller_diagnostics,
    head_importance,
    iterative_diagnostics,
    train_controller,
    train_iterative,
    unpruned_states,
)
from mcap.errors import McapError
from mcap.modeling import load_pretrained
from mcap.outputs import atomic_dir, write_json
from mcap.patterns import PatternCNN
from mcap.probe import TaskProbe
from mcap.splits import read_split
from mcap.strategies import PruneContext
from mcap.strategies.base import learned_scores_dir
from mcap.strategies.head_gradient import GradientHeads  # the diagnostics compare the scores with its scores
from mcap.tracking import log_history

ITERATIVE = "mcap_iterative"
# Per variant (the strategy that prunes with its scores): where its controllers and its diagnostics go.
VARIANTS = {"mcap": (Path("models/meta_controller"), Path("reports/mcap/controller")),
            ITERATIVE: (Path("models/meta_controller_iterative"), Path("reports/mcap_iterative/controller"))}


def main(params, args):
    if args.variant not in VARIANTS:
        raise McapError(f"stages/meta_controller.py: --variant must be one of {', '.join(VARIANTS)}, got {args.variant!r}")
    (controller_dir, report_dir), iterative = VARIANTS[args.variant], args.variant == ITERATIVE
    mcap, tasks, train_tasks = params.mcap, params.all_tasks(), params.mcap_train_tasks()
    seed = mcap.seeds[0]  # the classifier head's initialisation for head_gradient's probe, and the diagnostics' focus
    model, tokenizer = load_pretrained(params.model.name_or_path, seed)
    cnn = PatternCNN()
    cnn.load_state_dict(load_file("models/pattern_cnn/model.safetensors"))
    cnn.eval()
    train = {task: read_split(Path("data/processed") / task, "train").head(mcap.pool_examples) for task in tasks}
    pools = {task: build_pool(model, cnn, extract_maps(model, tokenizer, list(frame["sentence"]), mcap.map_length, 32),
                              frame["label"].to_numpy()) for task, frame in train.items()}
    # Before the controllers freeze the encoder: head_gradient fits its probe by gradient steps.
    reference = {task: GradientHeads().seeded_scores(PruneContext.of(params, model, tokenizer, task, train[task], seed)).numpy()
                 for task in train_tasks}
    if not iterative:  # mcap's probes: fitted once, on the unpruned model (train_iterative refits its own per step)
        probes = {task: TaskProbe.fit(pools[task].representations.numpy(), pools[task].labels.numpy()) for task in train_tasks}
    histories, scores = {}, {}
    with atomic_dir(controller_dir) as staging:
        for controller_seed in mcap.seeds:
            settings = ControllerSettings.of(mcap, params.prune.ratio, controller_seed, iterative)
            if iterative:
                controller, histories[controller_seed], by_task = train_iterative(model, cnn, pools, train_tasks, settings,
                                                                                  mcap.iterative_step)
            else:
                states = unpruned_states(pools, probes, settings.task_weight)
                controller, histories[controller_seed] = train_controller(model, cnn, pools, states, train_tasks, settings)
                by_task = {task: head_importance(controller, pools[task]) for task in tasks}
            scores[controller_seed] = {task: by_task[task].numpy() for task in tasks}
            save_file(controller.state_dict(), str(staging / f"controller-seed-{controller_seed}.safetensors"))
    for task in tasks:
        write_json(learned_scores_dir(args.variant) / f"{task}.json", {
            "task": task, "meta_trained_on": train_tasks, "seen_in_meta_training": task in train_tasks,
            "delta_by_seed": {str(s): scores[s][task].tolist() for s in mcap.seeds},
        })
    diagnose = iterative_diagnostics if iterative else controller_diagnostics
    write_json(report_dir / "diagnostics.json", diagnose(histories, scores, seed, train_tasks, reference))
    log_history(report_dir, histories[seed])


if __name__ == "__main__":
    run_stage(main, "variant")
