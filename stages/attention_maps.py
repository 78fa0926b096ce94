"""Stage attention_maps: the pre-trained model's per-head attention maps on a pool of train sentences per task, and
the pattern the CNN of the pattern_cnn stage assigns each head."""

from pathlib import Path

from mcap.attention_maps import extract_maps, plot_map_grid, save_maps
from mcap.cli import run_stage
from mcap.modeling import load_pretrained
from mcap.outputs import atomic_dir, write_json
from mcap.patterns import PATTERNS, head_patterns, load_pattern_cnn, plot_pattern_distribution
from mcap.splits import read_split

REPORT_DIR = Path("reports/mcap/attention")


def main(params, args):
    # The maps come from the encoder alone: the classifier head's seed is irrelevant, and leaving `seed` out
    # keeps a pruning/controller seed change from rerunning this stage.
    model, tokenizer = load_pretrained(params.model.name_or_path, seed=0)
    size, count = params.mcap.map_length, params.mcap.map_examples
    cnn, patterns = load_pattern_cnn(), {}
    with atomic_dir(Path("data/attention")) as staging:
        for task in params.tasks:
            sentences = list(read_split(Path("data/processed") / task, "train")["sentence"].head(count))
            arrays = extract_maps(model, tokenizer, sentences, size, params.train.batch_size)
            save_maps(staging / f"{task}.npz", arrays, sentences)
            plot_map_grid(arrays["maps"][0], int(arrays["attention_mask"][0].sum()),
                          f"{task}: attention maps of “{sentences[0][:70]}” (rows: layers, columns: heads)",
                          REPORT_DIR / f"{task}.png")
            patterns[task] = head_patterns(cnn, arrays["maps"])
    plot_pattern_distribution(patterns, REPORT_DIR / "head_patterns.png")
    shares = {task: {name: float((found == i).mean()) for i, name in enumerate(PATTERNS)} for task, found in patterns.items()}
    write_json(Path("reports/mcap/head_patterns.json"), {"head_pattern_share": shares})


if __name__ == "__main__":
    run_stage(main)
