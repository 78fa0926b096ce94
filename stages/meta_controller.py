"""Stage meta_controller: meta-train g(T, Φ) over mcap.train_tasks, once per seed of mcap.seeds; write δ for every task.

The mcap strategy prunes with δ of the controller whose seed is the run's ``seed``, so varying
``seed`` varies the controller without rerunning this stage; diagnostics.json measures how much
δ depends on the controller's seed.
"""

from pathlib import Path

from safetensors.torch import load_file, save_file

from mcap.attention_maps import extract_maps
from mcap.cli import run_stage
from mcap.controller import ControllerSettings, build_pool, controller_diagnostics, head_importance, train_controller
from mcap.data import read_split
from mcap.errors import McapError
from mcap.modeling import load_pretrained
from mcap.outputs import atomic_dir, write_json
from mcap.params import all_tasks, get, optional_count
from mcap.patterns import PatternCNN
from mcap.probe import TaskProbe
from mcap.pruning import check_ratio
from mcap.ranking import head_scores
from mcap.strategies import PruneContext
from mcap.strategies.mcap import DELTA_DIR
from mcap.tracking import log_history

REPORT_DIR = Path("reports/mcap/controller")
REFERENCE_STRATEGY = "head_gradient"  # the diagnostics compare δ with its scores


def controller_settings(params, seed: int) -> ControllerSettings:
    return ControllerSettings(
        k=get(params, "mcap.k", int), passes=get(params, "mcap.passes", int), update_every=get(params, "mcap.update_every", int),
        learning_rate=get(params, "mcap.lr", float), conditional_learning_rate=get(params, "mcap.conditional_lr", float),
        task_weight=get(params, "mcap.task_weight", (int, float)),
        cnn_weight=get(params, "mcap.cnn_weight", (int, float)), noise_start=get(params, "mcap.noise_start", (int, float)),
        noise_end=get(params, "mcap.noise_end", (int, float)), cnn_instances=get(params, "mcap.cnn_instances", int),
        ratio=check_ratio(get(params, "prune.ratio")), seed=seed,
    )


def prune_context(params, model, tokenizer, task: str, train, seed: int) -> PruneContext:
    return PruneContext(model=model, tokenizer=tokenizer, task=task, train=train, ratio=check_ratio(get(params, "prune.ratio")),
                        seed=seed, options=get(params, "prune", dict), max_seq_len=get(params, "train.max_seq_len", int),
                        batch_size=get(params, "train.batch_size", int))


def main(params, args):
    tasks, train_tasks = all_tasks(params), get(params, "mcap.train_tasks", list)
    unknown = sorted(set(train_tasks) - set(tasks))
    if unknown or not train_tasks:
        raise McapError(f"params.yaml: 'mcap.train_tasks' must be a non-empty subset of 'tasks' {tasks}, got {train_tasks}")
    seeds = get(params, "mcap.seeds", list)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) or len(set(seeds)) < len(seeds):
        raise McapError(f"params.yaml: 'mcap.seeds' must be a non-empty list of distinct integers, got {seeds!r}")
    seed = seeds[0]  # the classifier head's initialisation for head_gradient's probe, and the diagnostics' focus
    pool_size, length = optional_count(params, "mcap.pool_examples"), get(params, "mcap.map_length", int)
    model, tokenizer = load_pretrained(get(params, "model.name_or_path", str), seed)
    cnn = PatternCNN()
    cnn.load_state_dict(load_file("models/pattern_cnn/model.safetensors"))
    cnn.eval()
    train = {task: read_split(Path("data/processed") / task, "train").head(pool_size) for task in tasks}
    pools = {task: build_pool(model, cnn, extract_maps(model, tokenizer, list(frame["sentence"]), length, 32),
                              frame["label"].to_numpy()) for task, frame in train.items()}
    probes = {task: TaskProbe.fit(pools[task].representations.numpy(), pools[task].labels.numpy()) for task in train_tasks}
    # Before the controllers freeze the encoder: head_gradient fits its probe by gradient steps.
    reference = {task: head_scores(REFERENCE_STRATEGY, prune_context(params, model, tokenizer, task, train[task], seed), seed).numpy()
                 for task in train_tasks}
    histories, deltas = {}, {}
    with atomic_dir(Path("models/meta_controller")) as staging:
        for controller_seed in seeds:
            controller, histories[controller_seed] = train_controller(model, cnn, pools, probes, train_tasks,
                                                                      controller_settings(params, controller_seed))
            deltas[controller_seed] = {task: head_importance(controller, pools[task]).numpy() for task in tasks}
            save_file(controller.state_dict(), str(staging / f"controller-seed-{controller_seed}.safetensors"))
    for task in tasks:
        write_json(DELTA_DIR / f"{task}.json", {
            "task": task, "meta_trained_on": train_tasks, "seen_in_meta_training": task in train_tasks,
            "delta_by_seed": {str(s): deltas[s][task].tolist() for s in seeds},
        })
    write_json(REPORT_DIR / "diagnostics.json", controller_diagnostics(histories, deltas, seed, train_tasks, reference))
    log_history(REPORT_DIR, histories[seed])


if __name__ == "__main__":
    run_stage(main)
