"""LIME and SHAP explanations of a fine-tuned classifier (paper §IV) and their measured faithfulness.

Both methods attribute to *word positions* (the tokens of ``WORD`` in text order), so a word that
occurs twice gets two attributions and a rationale names positions, not word types.

* LIME (``lime.lime_text.LimeTextExplainer``, ``bow=False``: one feature per position, a removed
  word is deleted) explains P(positive) with a batched ``predict_proba``; weights < 0 push towards
  negative (the paper's "(−)"), > 0 towards positive.
* SHAP (``shap.Explainer`` with a ``shap.maskers.Text`` masker) explains the log-odds of the
  positive class, z1 − z0 = logit(P(positive)): the paper "convert[s] the probabilities into logit
  values". The raw score z1 alone would not do: with 2-class cross-entropy only z1 − z0 is trained,
  and z1 = ½(z1 − z0) + ½(z1 + z0) carries an untrained, input-dependent half.
* Faithfulness (DeYoung et al. 2020, ERASER), for the predicted class c and a rationale R (the at
  most k positions whose attribution supports c, strongest first): comprehensiveness =
  p(c|x) − p(c|x∖R) (high = the words mattered) and sufficiency = p(c|x) − p(c|R) (low = the words
  alone suffice); x∖R deletes the rationale's positions from the text, R keeps only them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mcap.devices import autocast, pick_device, precision
from mcap.figures import saved_figure
from mcap.params import ExplainSettings

CLASS_NAMES = ["negative", "positive"]
PAPER_TEXTS = {  # the paper's Table II
    "T1": "Loving the first days of summer! <3",
    "T2": "I hate when people put lol when we are having a serious talk.",
    "T3": "People are complaining about lack of talent. Takes a lot of talent to ignore objectification and "
          "degradation #MissAmerica",
}
WORD = re.compile(r"\w+|[^\w\s]+")  # words and punctuation runs, in order


class TextClassifier:
    """Batched text → logits / probabilities of a fine-tuned 2-class model (no gradients), in the precision test
    quality is measured in (:attr:`precision`)."""

    def __init__(self, model: nn.Module, tokenizer, max_seq_len: int, batch_size: int = 64):
        self.model = model.eval().to(pick_device())
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.batch_size = batch_size
        self.precision = precision(self.model.device)

    @torch.inference_mode()
    def logits(self, texts) -> np.ndarray:
        texts = [str(text) for text in texts]
        outputs = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                     max_length=self.max_seq_len, return_tensors="pt").to(self.model.device)
            with autocast(self.model.device):
                outputs.append(self.model(**encoded).logits.float().cpu())
        return torch.cat(outputs).numpy() if outputs else np.zeros((0, 2), dtype=np.float32)

    def predict_proba(self, texts) -> np.ndarray:
        """(N, 2) probabilities; each row sums to 1."""
        return torch.from_numpy(self.logits(texts)).softmax(dim=-1).numpy()

    def log_odds(self, texts) -> np.ndarray:
        """(N,) log-odds of the positive class, z1 − z0 = log P(positive) − log P(negative)."""
        logits = self.logits(texts)
        return logits[:, 1] - logits[:, 0]

    def unusable(self, text: str) -> str | None:
        """Why ``text`` cannot be explained (empty, or nothing but special tokens), else None."""
        if not text.strip():
            return "empty text"
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids or all(i == self.tokenizer.unk_token_id for i in ids):
            return "text tokenizes to nothing the model knows"
        return None


@dataclass
class Explanation:
    """Contributions of each word position of the text towards the *positive* class."""

    method: str
    words: list[str]  # WORD tokens of the text, in order
    weights: list[float]  # one per position
    probability_positive: float
    base_value: float | None = None  # SHAP: expected positive-class log-odds over the masker's background
    html: str = ""

    @property
    def predicted(self) -> int:
        return int(self.probability_positive >= 0.5)

    def rationale(self, k: int) -> list[int]:
        """Positions of the at most k words that support the predicted class, strongest first.

        Words that push towards the other class are never part of it, so it may hold fewer than k."""
        sign = 1 if self.predicted == 1 else -1
        supporting = [position for position, weight in enumerate(self.weights) if sign * weight > 0]
        return sorted(supporting, key=lambda position: -sign * self.weights[position])[:k]


def explain_lime(classifier: TextClassifier, text: str, samples: int, seed: int) -> Explanation:
    from lime.lime_text import LimeTextExplainer

    words = WORD.findall(text)
    # bow=False: features are positions; mask_string="": a removed word is deleted, not replaced by a placeholder
    explainer = LimeTextExplainer(class_names=CLASS_NAMES, random_state=seed, split_expression=WORD.findall,
                                  bow=False, mask_string="")
    result = explainer.explain_instance(text, classifier.predict_proba, labels=(1,), num_features=len(words),
                                        num_samples=samples)
    weights = [0.0] * len(words)
    for position, weight in result.as_map()[1]:
        weights[position] = float(weight)
    return Explanation("lime", words, weights, float(result.predict_proba[1]), html=result.as_html(labels=(1,)))


def explain_shap(classifier: TextClassifier, text: str, max_evals: int) -> Explanation:
    import shap

    explainer = shap.Explainer(classifier.log_odds, shap.maskers.Text(classifier.tokenizer))
    values = explainer([text], max_evals=max_evals, batch_size=classifier.batch_size, silent=True)
    words, weights = words_from_tokens(text, list(values.data[0]), values.values[0])
    probability = float(classifier.predict_proba([text])[0, 1])
    return Explanation("shap", words, weights, probability, base_value=float(values.base_values[0]),
                       html=shap.plots.text(values[0], display=False))


def words_from_tokens(text: str, tokens: list[str], values: np.ndarray) -> tuple[list[str], list[float]]:
    """Sum sub-word token values into the words of ``text`` they overlap (tokens concatenate to the text)."""
    spans = list(WORD.finditer(text))
    totals = [0.0] * len(spans)
    position = 0
    for token, value in zip(tokens, values):
        start, end = position, position + len(token)
        position = end
        for index, span in enumerate(spans):
            if span.start() < end and start < span.end():
                totals[index] += float(value)
                break
    return [span.group() for span in spans], totals


# --------------------------------------------------------------------------------------------
# Faithfulness
# --------------------------------------------------------------------------------------------


def without_positions(text: str, positions: list[int]) -> str:
    """``text`` with the words at ``positions`` (indices into its WORD tokens) cut out; the rest is unchanged."""
    spans = list(WORD.finditer(text))
    kept, start = [], 0
    for position in sorted(positions):
        kept.append(text[start:spans[position].start()])
        start = spans[position].end()
    return "".join(kept) + text[start:]


def only_positions(text: str, positions: list[int]) -> str:
    """The words at ``positions``, in text order, separated by spaces."""
    words = WORD.findall(text)
    return " ".join(words[position] for position in sorted(positions))


def faithfulness(classifier: TextClassifier, text: str, rationale: list[int]) -> dict[str, float]:
    """ERASER comprehensiveness and sufficiency of the ``rationale`` positions for the model's predicted class."""
    full, reduced, alone = classifier.predict_proba(
        [text, without_positions(text, rationale), only_positions(text, rationale)])
    predicted = int(full.argmax())
    return {"comprehensiveness": float(full[predicted] - reduced[predicted]),
            "sufficiency": float(full[predicted] - alone[predicted])}


def jaccard(first: list[str], second: list[str]) -> float:
    a, b = set(first), set(second)
    return len(a & b) / len(a | b) if a | b else 1.0


# --------------------------------------------------------------------------------------------
# One model: the paper's texts (figures) and faithfulness on test sentences
# --------------------------------------------------------------------------------------------


METHODS = ("lime", "shap")
MEASURES = ("comprehensiveness", "sufficiency")


def explain_texts(classifier: TextClassifier, texts: dict[str, str], settings: ExplainSettings, seed: int,
                  title: str, html_dir: Path, png_dir: Path) -> dict[str, dict]:
    """LIME and SHAP for each named text: HTML + PNG per method, and the numbers; unusable texts are skipped."""
    from tqdm.auto import tqdm

    html_dir.mkdir(parents=True, exist_ok=True)
    records = {}
    for name, text in tqdm(texts.items(), desc="explain texts", leave=False):
        reason = classifier.unusable(text)
        if reason:
            records[name] = {"text": text, "skipped": reason}
            continue
        records[name] = {"text": text}
        for explanation in (explain_lime(classifier, text, settings.lime_samples, seed),
                            explain_shap(classifier, text, settings.shap_max_evals)):
            (html_dir / f"{explanation.method}_{name}.html").write_text(explanation.html)
            plot_contributions(explanation, f"{title} · {name}", png_dir / f"{explanation.method}_{name}.png")
            records[name][explanation.method] = {"probability_positive": explanation.probability_positive,
                                                 "base_value": explanation.base_value,
                                                 "words": explanation.words, "weights": explanation.weights}
    return records


def measure_faithfulness(classifier: TextClassifier, sentences: list[str], settings: ExplainSettings,
                         seed: int) -> list[dict]:
    """Per sentence: each method's rationale (positions and words) and its comprehensiveness/sufficiency."""
    from tqdm.auto import tqdm

    rows = []
    for sentence in tqdm(sentences, desc="faithfulness", leave=False):
        row = {"sentence": sentence}
        for explanation in (explain_lime(classifier, sentence, settings.faithfulness_lime_samples, seed),
                            explain_shap(classifier, sentence, settings.faithfulness_shap_max_evals)):
            rationale = explanation.rationale(settings.top_k)
            row[explanation.method] = {"rationale": rationale,
                                       "rationale_words": [explanation.words[p] for p in rationale],
                                       **faithfulness(classifier, sentence, rationale)}
        rows.append(row)
    return rows


def summarise_faithfulness(rows: list[dict]) -> dict[str, dict[str, float]]:
    return {method: {measure: float(np.mean([row[method][measure] for row in rows])) for measure in MEASURES}
            for method in METHODS if rows}


def plot_contributions(explanation: Explanation, title: str, path: Path) -> None:
    """Horizontal bars, one per word: red pushes towards positive, blue towards negative."""
    words, weights = explanation.words, explanation.weights
    if explanation.method == "lime":  # LIME as the paper shows it: the strongest word on top
        order = sorted(range(len(words)), key=lambda i: abs(weights[i]))
        words, weights = [words[i] for i in order], [weights[i] for i in order]
    else:  # SHAP: text order, first word on top
        words, weights = words[::-1], weights[::-1]
    with saved_figure(path, figsize=(6.4, 0.8 + 0.32 * len(words))) as (_fig, ax):
        ax.barh(range(len(words)), weights, color=["#d62728" if w > 0 else "#1f77b4" for w in weights])
        ax.set_yticks(range(len(words)), words, fontsize=9)
        ax.axvline(0, color="black", linewidth=0.8)
        unit = "LIME weight for P(positive)" if explanation.method == "lime" else "SHAP value (positive-class log-odds)"
        ax.set_xlabel(f"{unit}   ← negative | positive →", fontsize=9)
        summary = f"P(positive) = {explanation.probability_positive:.2f}"
        if explanation.base_value is not None:
            summary += f", base log-odds {explanation.base_value:.2f}"
        ax.set_title(f"{explanation.method.upper()} · {title}\n{summary}", fontsize=9)
