"""LIME/SHAP wrappers, faithfulness measures and the explanation reports."""

import numpy as np
import pytest

from mcap.explain import (
    ExplainSettings,
    Explanation,
    TextClassifier,
    explain_lime,
    explain_texts,
    faithfulness,
    jaccard,
    only_words,
    without_words,
    words_from_tokens,
)
from mcap.explain_report import faithfulness_summary, lime_table, most_faithful


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
    right = faithfulness(KeywordClassifier(), text, ["good"])
    assert right["comprehensiveness"] == pytest.approx(0.8) and right["sufficiency"] == pytest.approx(0.0)
    wrong = faithfulness(KeywordClassifier(), text, ["film"])
    assert wrong["comprehensiveness"] == pytest.approx(0.0) and wrong["sufficiency"] == pytest.approx(0.8)


def test_word_removal_keeps_order_and_ignores_case():
    assert without_words("I hate it , really .", ["HATE", "."]) == "I it , really"
    assert only_words("I hate it , really .", ["hate", "really"]) == "hate really"
    assert jaccard(["a", "b"], ["b", "c"]) == pytest.approx(1 / 3)


def test_shap_token_values_are_summed_into_words():
    words, weights = words_from_tokens("I hate lol.", ["", "I ", "ha", "te ", "lol", "."], np.array([0, 1, 2, 3, 4, 5.0]))
    assert words == ["I", "hate", "lol", "."] and weights == [1.0, 5.0, 4.0, 5.0]


def test_top_words_support_the_predicted_class():
    negative = Explanation("lime", ["hate", "lol", "fun"], [-0.5, -0.1, 0.3], probability_positive=0.2)
    assert negative.top_words(2) == ["hate", "lol"]
    positive = Explanation("lime", ["hate", "lol", "fun"], [-0.5, -0.1, 0.3], probability_positive=0.8)
    assert positive.top_words(1) == ["fun"]


def test_unusable_texts_are_skipped_and_recorded(classifier, tmp_path):
    settings = ExplainSettings(lime_samples=50, shap_max_evals=20, top_k=2, seed=0)
    records = explain_texts(classifier, {"empty": "   ", "ok": "the film was good"}, settings, "toy", tmp_path / "html", tmp_path / "png")
    assert records["empty"] == {"text": "   ", "skipped": "empty text"}
    assert set(records["ok"]) == {"text", "lime", "shap"}
    assert (tmp_path / "png" / "shap_ok.png").stat().st_size > 0 and (tmp_path / "html" / "lime_ok.html").is_file()
    assert not (tmp_path / "png" / "lime_empty.png").exists()


def fake_record(weights: dict[str, float], top: list[str], comprehensiveness: float, sufficiency: float) -> dict:
    method = {"top_words": top, "comprehensiveness": comprehensiveness, "sufficiency": sufficiency}
    return {"texts": {"T2": {"text": "I hate lol", "lime": {"words": list(weights), "weights": list(weights.values()),
                                                             "probability_positive": 0.1}}},
            "faithfulness": [{"sentence": "s", "lime": method, "shap": method}]}


def test_reports_compare_models_with_the_unpruned_one():
    explanations = {"head_random": fake_record({"hate": -0.4, "lol": 0.1}, ["hate", "x"], 0.5, 0.1),
                    "none": fake_record({"hate": -0.5, "lol": -0.2}, ["hate", "lol"], 0.3, 0.2)}
    table = lime_table(explanations)
    assert "| 6. Random head pruning | 0.90 | (−) 0.40 | (+) 0.10 |" in table
    summary = faithfulness_summary(explanations)
    assert summary["head_random"]["lime_jaccard_vs_unpruned"] == pytest.approx(1 / 3)
    assert summary["none"]["shap_jaccard_vs_unpruned"] == 1.0
    assert most_faithful(summary, "lime") == "head_random"
