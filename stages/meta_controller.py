"""Stage meta_controller: meta-train g(T, Φ) over mcap.train_tasks; write δ for every task."""

from pathlib import Path

from safetensors.torch import load_file, save_file

from mcap.attention_maps import load_maps
from mcap.cli import run_stage
from mcap.controller import ControllerSettings, build_pool, head_importance, train_controller
from mcap.errors import McapError
from mcap.modeling import load_pretrained
from mcap.outputs import atomic_dir, write_json
from mcap.params import all_tasks, get
from mcap.patterns import PatternCNN
from mcap.pruning import check_ratio
from mcap.strategies.mcap import DELTA_DIR
from mcap.tracking import log_history


def main(params, args):
    tasks, train_tasks = all_tasks(params), get(params, "mcap.train_tasks", list)
    unknown = sorted(set(train_tasks) - set(tasks))
    if unknown or not train_tasks:
        raise McapError(f"params.yaml: 'mcap.train_tasks' must be a non-empty subset of 'tasks' {tasks}, got {train_tasks}")
    seed = get(params, "seed", int)
    settings = ControllerSettings(
        k=get(params, "mcap.k", int), episodes=get(params, "mcap.episodes", int),
        update_every=get(params, "mcap.update_every", int), learning_rate=get(params, "mcap.lr", float),
        cnn_weight=get(params, "mcap.cnn_weight", (int, float)), budget_weight=get(params, "mcap.budget_weight", (int, float)),
        gumbel_tau=get(params, "mcap.gumbel_tau", float), cnn_instances=get(params, "mcap.cnn_instances", int),
        ratio=check_ratio(get(params, "prune.ratio")), seed=seed,
    )
    model, _tokenizer = load_pretrained(get(params, "model.name_or_path", str), seed)
    cnn = PatternCNN()
    cnn.load_state_dict(load_file("models/pattern_cnn/model.safetensors"))
    cnn.eval()
    pools = {task: build_pool(model, cnn, load_maps(Path("data/attention") / f"{task}.npz")) for task in tasks}
    controller, history = train_controller(model, cnn, pools, train_tasks, settings)
    with atomic_dir(Path("models/meta_controller")) as staging:
        save_file(controller.state_dict(), str(staging / "controller.safetensors"))
    for task in tasks:
        write_json(DELTA_DIR / f"{task}.json", {
            "task": task, "meta_trained_on": train_tasks, "seen_in_meta_training": task in train_tasks,
            "delta": head_importance(controller, pools[task]).tolist(),
        })
    log_history(Path("reports/mcap/controller"), history)


if __name__ == "__main__":
    run_stage(main)
