"""Stage attention_maps: the pre-trained model's per-head attention maps on a pool of train sentences per task."""

from pathlib import Path

from mcap.attention_maps import extract_maps, plot_map_grid, save_maps
from mcap.cli import run_stage
from mcap.modeling import load_pretrained
from mcap.outputs import atomic_dir
from mcap.params import all_tasks, get
from mcap.splits import read_split


def main(params, args):
    # The maps come from the encoder alone: the classifier head's seed is irrelevant, and leaving `seed` out
    # keeps a pruning/controller seed change from rerunning this stage.
    model, tokenizer = load_pretrained(get(params, "model.name_or_path", str), seed=0)
    size, count = get(params, "mcap.map_length", int), get(params, "mcap.map_examples", int)
    with atomic_dir(Path("data/attention")) as staging:
        for task in all_tasks(params):
            sentences = list(read_split(Path("data/processed") / task, "train")["sentence"].head(count))
            arrays = extract_maps(model, tokenizer, sentences, size, get(params, "train.batch_size", int))
            save_maps(staging / f"{task}.npz", arrays, sentences)
            plot_map_grid(arrays["maps"][0], int(arrays["attention_mask"][0].sum()),
                          f"{task}: attention maps of “{sentences[0][:70]}” (rows: layers, columns: heads)",
                          Path("reports/mcap/attention") / f"{task}.png")


if __name__ == "__main__":
    run_stage(main)
