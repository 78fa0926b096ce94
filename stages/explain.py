"""Stage explain@<task>-<strategy>: LIME and SHAP for the paper's texts, and measured faithfulness."""

from pathlib import Path

from mcap.cli import run_stage
from mcap.explain import (
    PAPER_TEXTS,
    ExplainSettings,
    TextClassifier,
    explain_texts,
    measure_faithfulness,
    summarise_faithfulness,
)
from mcap.modeling import load_model
from mcap.outputs import atomic_dir, write_json
from mcap.params import get
from mcap.splits import read_split

MODELS_DIR = Path("reports/explain/models")


def main(params, args):
    pair = f"{args.task}-{args.strategy}"
    model, tokenizer, _pruning = load_model(Path("models/finetuned") / pair / f"seed-{args.seed}")
    classifier = TextClassifier(model, tokenizer, get(params, "train.max_seq_len", int))
    settings = ExplainSettings(
        lime_samples=get(params, "explain.lime_samples", int), shap_max_evals=get(params, "explain.shap_max_evals", int),
        faithfulness_lime_samples=get(params, "explain.faithfulness_lime_samples", int),
        faithfulness_shap_max_evals=get(params, "explain.faithfulness_shap_max_evals", int),
        top_k=get(params, "explain.top_k", int), seed=get(params, "seed", int))
    texts = {**PAPER_TEXTS, **{f"U{i}": str(t) for i, t in enumerate(get(params, "explain.texts", list), start=1)}}
    test = read_split(Path("data/processed") / args.task, "test")
    sentences = list(test["sentence"].head(get(params, "explain.faithfulness_examples", int)))
    with atomic_dir(MODELS_DIR / pair) as staging:
        records = explain_texts(classifier, texts, settings, pair, staging / "html", staging / "png")
        rows = measure_faithfulness(classifier, sentences, settings)
        write_json(staging / "explanations.json", {"texts": records, "faithfulness": rows})
        skipped = {name: record["skipped"] for name, record in records.items() if "skipped" in record}
        write_json(staging / "metrics.json", {**summarise_faithfulness(rows), "faithfulness_sentences": len(rows),
                                              "texts_explained": len(records) - len(skipped), "texts_skipped": len(skipped)})


if __name__ == "__main__":
    run_stage(main, "task", "strategy", "seed")
