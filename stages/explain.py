"""Stage explain@<task>-<strategy>-<ratio>: LIME and SHAP for the paper's texts, and measured faithfulness, of the
model fine-tuned at the first fine-tuning seed from the strategy's first pruning seed."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.explain import (
    PAPER_TEXTS,
    TextClassifier,
    explain_texts,
    measure_faithfulness,
    summarise_faithfulness,
)
from mcap.grid import finetuned_dir, model_name
from mcap.modeling import load_model
from mcap.outputs import atomic_dir, write_json
from mcap.splits import read_split

MODELS_DIR = Path("reports/explain/models")


def main(params, args):
    task, strategy, ratio = args.task, args.strategy, float(args.ratio)
    name = f"{task}-{model_name(strategy, ratio)}"
    # The first pruning seed the strategy ran at (a strategy that draws nothing runs at the first of prune.seeds only)
    pruning_seed = next(seed for seed in params.prune.seeds
                        if finetuned_dir(task, strategy, ratio, params.seeds[0], seed).is_dir())
    model, tokenizer, _pruning = load_model(finetuned_dir(task, strategy, ratio, params.seeds[0], pruning_seed))
    classifier = TextClassifier(model, tokenizer, params.train.max_seq_len)
    settings = params.explain
    texts = {**PAPER_TEXTS, **{f"U{i}": text for i, text in enumerate(settings.texts, start=1)}}
    test = read_split(Path("data/processed") / task, "test")
    sentences = list(test["sentence"].head(settings.faithfulness_examples))
    with atomic_dir(MODELS_DIR / name) as staging:
        records = explain_texts(classifier, texts, settings, settings.seed, name, staging / "html", staging / "png")
        rows = measure_faithfulness(classifier, sentences, settings, settings.seed)
        write_json(staging / "explanations.json", {"texts": records, "faithfulness": rows,
                                                   "precision": classifier.precision})
        skipped = {text: record["skipped"] for text, record in records.items() if "skipped" in record}
        write_json(staging / "metrics.json", {**summarise_faithfulness(rows), "faithfulness_sentences": len(rows),
                                              "texts_explained": len(records) - len(skipped), "texts_skipped": len(skipped)})


if __name__ == "__main__":
    run_stage(main, "task", "strategy", "ratio")
