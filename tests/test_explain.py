"""LIME/SHAP wrappers, faithfulness measures and the explanation reports."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mcap.explain import (
    Explanation,
    TextClassifier,
    explain_lime,
    explain_shap,
    explain_texts,
    faithfulness,
    jaccard,
    only_positions,
    without_positions,
    words_from_tokens,
)
from mcap.explain_report import faithfulness_summary, lime_table, most_faithful
from mcap.params import ExplainSettings


class KeywordClassifier:
    """P(positive) = 0.9 when the text contains 'good', else 0.1: every explanation's answer is known."""

    def predict_proba(self, texts):
        positive = np.array([0.9 if "good" in text.split() else 0.1 for text in texts])
        return np.stack([1 - positive, positive], axis=1)


@pytest.fixture
def classifier(tiny_model):
    model, tokenizer = tiny_model
    return TextClassifier(model, tokenizer, max_seq_len=32, batch_size=4)


def test_predict_proba_rows_sum_to_one(classifier):
    probabilities = classifier.predict_proba(["the film was good", "bad", "a very dull story and plot", "it is"])
    assert probabilities.shape == (4, 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)


def test_seeded_lime_explanation_is_identical_twice(classifier):
    first, second = (explain_lime(classifier, "the plot was really good and charming", samples=200, seed=3) for _ in range(2))
    assert first.words == second.words and first.weights == second.weights


def test_comprehensiveness_and_sufficiency_on_a_known_classifier():
    text = "the film was good"
    right = faithfulness(KeywordClassifier(), text, [3])  # "good"
    assert right["comprehensiveness"] == pytest.approx(0.8) and right["sufficiency"] == pytest.approx(0.0)
    wrong = faithfulness(KeywordClassifier(), text, [1])  # "film"
    assert wrong["comprehensiveness"] == pytest.approx(0.0) and wrong["sufficiency"] == pytest.approx(0.8)


def test_deletion_is_by_position_not_by_word_type():
    text = "good grief, the good old film isn't."
    assert without_positions(text, [0]) == " grief, the good old film isn't."  # the second "good" stays
    assert without_positions(text, [4, 2]) == "good grief the  old film isn't."
    assert only_positions(text, [6, 0]) == "good film"
    assert jaccard([1, 2], [2, 3]) == pytest.approx(1 / 3)


def test_a_repeated_word_gets_one_lime_weight_per_position(classifier):
    explanation = explain_lime(classifier, "good film , good plot", samples=100, seed=0)
    assert explanation.words == ["good", "film", ",", "good", "plot"] and len(explanation.weights) == 5


def test_shap_token_values_are_summed_into_words():
    words, weights = words_from_tokens("I hate lol.", ["", "I ", "ha", "te ", "lol", "."], np.array([0, 1, 2, 3, 4, 5.0]))
    assert words == ["I", "hate", "lol", "."] and weights == [1.0, 5.0, 4.0, 5.0]


def test_a_rationale_holds_only_words_that_support_the_predicted_class():
    negative = Explanation("lime", ["hate", "lol", "fun", "meh"], [-0.1, -0.5, 0.3, 0.0], probability_positive=0.2)
    assert negative.rationale(3) == [1, 0]  # strongest first; "fun" opposes and "meh" is neutral: left out
    positive = Explanation("lime", ["hate", "lol", "fun", "meh"], [-0.1, -0.5, 0.3, 0.0], probability_positive=0.8)
    assert positive.rationale(3) == [2]


class SharedTermModel(torch.nn.Module):
    """Logits z0 = 4·#"the", z1 = 4·#"the" + 2·#"good": only z1 − z0 depends on "good", and "the" moves
    both logits alike, so it changes no probability. An explanation of z1 alone would credit "the"."""

    def __init__(self, tokenizer):
        super().__init__()
        self.the, self.good = tokenizer.convert_tokens_to_ids(["the", "good"])
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device

    @property
    def device(self):
        return self.anchor.device

    def forward(self, input_ids, attention_mask, **_):
        present = attention_mask.bool()
        shared = 4.0 * ((input_ids == self.the) & present).sum(dim=1)
        good = 2.0 * ((input_ids == self.good) & present).sum(dim=1)
        return SimpleNamespace(logits=torch.stack([shared, shared + good], dim=1).float())


def test_shap_explains_the_log_odds_of_the_positive_class(tiny_model):
    _model, tokenizer = tiny_model
    classifier = TextClassifier(SharedTermModel(tokenizer), tokenizer, max_seq_len=32)
    explanation = explain_shap(classifier, "the film the good", max_evals=200)
    weights = dict(zip(["the#1", "film", "the#2", "good"], explanation.weights))
    assert weights["good"] == pytest.approx(2.0, abs=1e-4)  # positive: towards class 1, at the log-odds' scale
    assert abs(weights["the#1"]) < 1e-4 and abs(weights["the#2"]) < 1e-4 and abs(weights["film"]) < 1e-4


def test_unusable_texts_are_skipped_and_recorded(classifier, tmp_path):
    settings = ExplainSettings(tasks=["toy"], seed=0, lime_samples=50, shap_max_evals=20, top_k=2, faithfulness_examples=2,
                               faithfulness_lime_samples=50, faithfulness_shap_max_evals=20)
    records = explain_texts(classifier, {"empty": "   ", "ok": "the film was good"}, settings, 0, "toy", tmp_path / "html",
                            tmp_path / "png")
    assert records["empty"] == {"text": "   ", "skipped": "empty text"}
    assert set(records["ok"]) == {"text", "lime", "shap"}
    assert (tmp_path / "png" / "shap_ok.png").stat().st_size > 0 and (tmp_path / "html" / "lime_ok.html").is_file()
    assert not (tmp_path / "png" / "lime_empty.png").exists()


def fake_record(weights: list[float], rationale: list[int], comprehensiveness: list[float],
                sufficiency: list[float]) -> dict:
    rows = [{"sentence": f"s{i}", **{method: {"rationale": rationale, "comprehensiveness": c, "sufficiency": s}
                                      for method in ("lime", "shap")}}
            for i, (c, s) in enumerate(zip(comprehensiveness, sufficiency))]
    return {"texts": {"T2": {"text": "I hate lol", "lime": {"words": ["I", "hate", "lol"], "weights": weights,
                                                             "probability_positive": 0.1}}},
            "faithfulness": rows}


def test_reports_compare_models_with_the_unpruned_one():
    explanations = {"head_random": {**fake_record([0.0, -0.4, 0.1], [1, 0], [0.5, 0.6], [0.1, 0.1]), "label": "6. Random head pruning"},
                    "none": {**fake_record([0.05, -0.5, -0.2], [1, 2], [0.3, 0.3], [0.2, 0.2]), "label": "8. Unpruned"}}
    table = lime_table(explanations)
    assert "| Model | PP | hate | lol | I |" in table
    assert "| 6. Random head pruning | 0.90 | (−) 0.40 | (+) 0.10 | (−) 0.00 |" in table
    summary = faithfulness_summary(explanations, seed=0)
    assert summary["head_random"]["lime_jaccard_vs_unpruned"] == pytest.approx(1 / 3)
    assert summary["none"]["shap_jaccard_vs_unpruned"] == 1.0
    assert summary["head_random"]["lime_faithfulness"] == pytest.approx(0.45)
    assert summary["none"]["lime_faithfulness_ci_low"] == summary["none"]["lime_faithfulness_ci_high"] == pytest.approx(0.1)


def test_the_most_faithful_model_is_named_only_when_its_interval_separates():
    rng = np.random.default_rng(0)
    noisy = lambda centre: list(centre + rng.normal(0, 0.3, 60))
    overlapping = {"a": fake_record([0, 0, 0], [0], noisy(0.50), [0.0] * 60),
                   "b": fake_record([0, 0, 0], [0], noisy(0.45), [0.0] * 60)}
    assert most_faithful(faithfulness_summary(overlapping, seed=0), "lime") is None
    separated = {"a": fake_record([0, 0, 0], [0], noisy(0.9), [0.0] * 60),
                 "b": fake_record([0, 0, 0], [0], noisy(0.1), [0.0] * 60)}
    summary = faithfulness_summary(separated, seed=0)
    assert summary["a"]["lime_faithfulness_ci_low"] > summary["b"]["lime_faithfulness_ci_high"]
    assert most_faithful(summary, "lime") == "a"


def test_with_no_task_explained_the_reports_are_written_empty_with_their_figures_folder(tmp_path):
    from mcap.explain_report import write_reports

    assert write_reports(tmp_path / "models", tmp_path, {}, [0.2], top_k=5, seed=0) == {}
    assert (tmp_path / "figures").is_dir() and not any((tmp_path / "figures").iterdir())  # DVC's declared output
    assert (tmp_path / "lime_table.md").is_file() and (tmp_path / "faithfulness.md").is_file()
