"""Stage explain@<task>-<strategy>: LIME and SHAP for the paper's texts, and measured faithfulness."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.explain import (
    PAPER_TEXTS,
    TextClassifier,
    explain_texts,
    measure_faithfulness,
    summarise_faithfulness,
)
from mcap.modeling import load_model
from mcap.outputs import atomic_dir, write_json
from mcap.splits import read_split

MODELS_DIR = Path("reports/explain/models")


def main(params, args):
    pair = f"{args.task}-{args.strategy}"
    model, tokenizer, _pruning = load_model(Path("models/finetuned") / pair / f"seed-{args.seed}")
    classifier = TextClassifier(model, tokenizer, params.train.max_seq_len)
    settings = params.explain
    texts = {**PAPER_TEXTS, **{f"U{i}": text for i, text in enumerate(settings.texts, start=1)}}
    test = read_split(Path("data/processed") / args.task, "test")
    sentences = list(test["sentence"].head(settings.faithfulness_examples))
    with atomic_dir(MODELS_DIR / pair) as staging:
        records = explain_texts(classifier, texts, settings, params.seed, pair, staging / "html", staging / "png")
        rows = measure_faithfulness(classifier, sentences, settings, params.seed)
        write_json(staging / "explanations.json", {"texts": records, "faithfulness": rows})
        skipped = {name: record["skipped"] for name, record in records.items() if "skipped" in record}
        write_json(staging / "metrics.json", {**summarise_faithfulness(rows), "faithfulness_sentences": len(rows),
                                              "texts_explained": len(records) - len(skipped), "texts_skipped": len(skipped)})


if __name__ == "__main__":
    run_stage(main, "task", "strategy", "seed")
