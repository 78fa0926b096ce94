"""Stage attention_maps: the pre-trained model's per-head attention maps on a pool of train sentences per task."""

from pathlib import Path

from mcap.attention_maps import extract_maps, plot_map_grid, save_maps
from mcap.cli import run_stage
from mcap.modeling import load_pretrained
from mcap.outputs import atomic_dir
from mcap.splits import read_split


def main(params, args):
    # The maps come from the encoder alone: the classifier head's seed is irrelevant, and leaving `seed` out
    # keeps a pruning/controller seed change from rerunning this stage.
    model, tokenizer = load_pretrained(params.model.name_or_path, seed=0)
    size, count = params.mcap.map_length, params.mcap.map_examples
    with atomic_dir(Path("data/attention")) as staging:
        for task in params.all_tasks():
            sentences = list(read_split(Path("data/processed") / task, "train")["sentence"].head(count))
            arrays = extract_maps(model, tokenizer, sentences, size, params.train.batch_size)
            save_maps(staging / f"{task}.npz", arrays, sentences)
            plot_map_grid(arrays["maps"][0], int(arrays["attention_mask"][0].sum()),
                          f"{task}: attention maps of “{sentences[0][:70]}” (rows: layers, columns: heads)",
                          Path("reports/mcap/attention") / f"{task}.png")


if __name__ == "__main__":
    run_stage(main)
