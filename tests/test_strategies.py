"""Every registered strategy on a tiny model, and the scoring functions on hand-built attention."""

import math
from pathlib import Path

import pytest
import torch

from conftest import PRUNE_SETTINGS, TRAIN_SETTINGS, make_sentences
from mcap.errors import McapError
from mcap.heads import count_heads, removed_head_count
from mcap.pruning import prune_model
from mcap.strategies import PruneContext, get_strategy, known_strategies
from mcap.strategies.base import encoder_weight_sparsity, lowest_heads
from mcap.strategies.head_entropy import attention_entropy
from mcap.strategies.head_sep import attention_to_sep

HEAD_STRATEGIES = ["head_sep", "head_entropy", "head_random", "head_gradient", "head_gradient_ft"]
UNSTRUCTURED = ["imp", "l1_unstructured", "random_unstructured"]


def context(tiny_model, ratio: float, seed: int = 0, learned=None) -> PruneContext:
    model, tokenizer = tiny_model
    return PruneContext(model=model, tokenizer=tokenizer, task="toy", train=make_sentences(32, seed=1), ratio=ratio,
                        seed=seed, settings=PRUNE_SETTINGS, max_seq_len=32, batch_size=8, learned=learned,
                        training=TRAIN_SETTINGS)


def test_the_paper_baselines_and_ours_are_registered():
    assert set(HEAD_STRATEGIES + UNSTRUCTURED + ["none"]) <= set(known_strategies())


@pytest.mark.parametrize("name", known_strategies())
def test_each_strategy_module_defines_the_strategy_of_its_name_with_a_label(name):
    strategy = get_strategy(name)
    assert strategy.name == name and strategy.label.strip()


@pytest.mark.parametrize("name", HEAD_STRATEGIES)
def test_head_strategies_remove_the_lowest_scored_fraction(tiny_model, name):
    record = prune_model(name, context(tiny_model, ratio=0.5))
    model = tiny_model[0]
    assert count_heads(model) == record["kept_heads_count"] == 4
    scores = torch.tensor(record["head_scores"])
    removed = [scores[int(layer), head] for layer, heads in record["removed_heads"].items() for head in heads]
    kept = [scores[layer, head] for layer, heads in enumerate(record["kept_heads"]) for head in heads]
    assert max(removed) <= min(kept)


@pytest.mark.parametrize("name", UNSTRUCTURED)
def test_unstructured_strategies_zero_the_ratio_of_encoder_weights(tiny_model, name):
    record = prune_model(name, context(tiny_model, ratio=0.3))
    assert record["encoder_weight_sparsity"] == pytest.approx(0.3, abs=0.01)
    assert encoder_weight_sparsity(tiny_model[0]) == pytest.approx(0.3, abs=0.01)
    assert count_heads(tiny_model[0]) == 8


def test_imp_rewinds_surviving_weights_to_pretrained_values(tiny_model):
    model = tiny_model[0]
    before = model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    prune_model("imp", context(tiny_model, ratio=0.3))
    after = model.bert.encoder.layer[0].attention.self.query.weight.detach()
    survivors = after != 0
    assert torch.equal(after[survivors], before[survivors])


def test_l1_removes_the_smallest_magnitudes(tiny_model):
    model = tiny_model[0]
    weights = torch.cat([m.weight.detach().abs().flatten() for m in model.bert.encoder.modules() if isinstance(m, torch.nn.Linear)])
    threshold = weights.kthvalue(int(0.3 * weights.numel())).values
    prune_model("l1_unstructured", context(tiny_model, ratio=0.3))
    survivors = torch.cat([m.weight.detach().flatten() for m in model.bert.encoder.modules() if isinstance(m, torch.nn.Linear)])
    assert survivors[survivors != 0].abs().min() >= threshold


@pytest.mark.parametrize("name", ["head_random", "random_unstructured", "head_gradient"])
def test_same_seed_same_pruning(tiny_model_dir, name):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    records = []
    for _ in range(2):
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
        records.append(prune_model(name, context((model, AutoTokenizer.from_pretrained(tiny_model_dir)), 0.5, seed=3)))
    assert records[0] == records[1]


def test_ratio_that_removes_no_head_is_a_recorded_no_op(tiny_model, caplog):
    record = prune_model("head_entropy", context(tiny_model, ratio=0.1))  # 0.1 x 8 heads -> 0
    assert record["removed_heads_count"] == 0 and count_heads(tiny_model[0]) == 8
    assert "removes 0 of 8 heads" in record["notes"][0]
    assert "removes 0 of 8 heads" in caplog.text


def test_unknown_strategy_lists_the_known_ones(tiny_model):
    with pytest.raises(McapError, match="unknown pruning strategy 'magic'; known: .*head_entropy"):
        prune_model("magic", context(tiny_model, ratio=0.2))


def test_removed_head_count_never_exceeds_the_ratio():
    assert removed_head_count(0.2, 72) == 14 and removed_head_count(0.5, 72) == 36 and removed_head_count(0.2, 8) == 1


def test_lowest_heads_ranks_globally():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.05]])
    assert lowest_heads(scores, 3) == {0: [1], 1: [0, 2]}


def test_attention_to_sep_reads_the_last_real_token():
    probs = torch.zeros(1, 1, 4, 4)
    probs[0, 0, :, 2] = 1.0  # every query attends to position 2, the [SEP] of a 3-token sentence
    batch = {"attention_mask": torch.tensor([[1, 1, 1, 0]])}
    assert torch.equal(attention_to_sep(probs, batch), torch.ones(1, 1, 4))


def test_attention_entropy_of_uniform_and_peaked_rows():
    uniform = torch.full((1, 1, 1, 4), 0.25)
    peaked = torch.tensor([[[[1.0, 0.0, 0.0, 0.0]]]])
    assert attention_entropy(uniform, {}).item() == pytest.approx(math.log(4))
    assert attention_entropy(peaked, {}).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_importance_runs_where_the_model_lives(tiny_model, monkeypatch):
    """head_gradient's probe moves the model (accelerate: to CUDA); its mask must be made there too.
    The meta device stands in for CUDA; transformers cannot build an attention mask there, so batches go without."""
    from mcap.strategies import head_gradient

    def unpadded_batches_on(loader, device):
        for batch in loader:
            yield {"input_ids": batch["input_ids"].to(device), "labels": batch["labels"].to(device)}

    monkeypatch.setattr(head_gradient, "batches_on", unpadded_batches_on)
    context_on_meta = context(tiny_model, ratio=0.5)
    context_on_meta.model.to("meta")
    assert head_gradient.gradient_importance(context_on_meta).device.type == "meta"


def planted_attention(input_ids, attention_mask):
    """Per layer (B, 4, L, L): head h of layer l puts a share (4l + h + 1) / 9 on the final [SEP] and spreads the
    rest evenly over the other real tokens. More on [SEP] = less entropy, so the two criteria rank in opposite orders."""
    batch, length = input_ids.shape
    real = attention_mask.float()  # (B, L)
    sep = torch.nn.functional.one_hot(attention_mask.sum(dim=1) - 1, length).float()  # (B, L)
    others = (real - sep) / (real - sep).sum(dim=1, keepdim=True)  # (B, L)
    layers = []
    for layer in range(2):
        share = torch.tensor([(4 * layer + head + 1) / 9 for head in range(4)])[None, :, None, None]  # (1, 4, 1, 1)
        layers.append(share * sep[:, None, None, :] + (1 - share) * others[:, None, None, :])  # (B, 4, 1, L)
        layers[-1] = layers[-1].expand(batch, 4, length, length)
    return layers


@pytest.mark.parametrize("name, removed", [("head_sep", {"0": [0]}), ("head_entropy", {"1": [3]})])
def test_attention_criteria_remove_in_the_papers_direction(tiny_model, monkeypatch, name, removed):
    """head_sep drops the head with the least attention to [SEP]; head_entropy the one with the lowest entropy."""
    from mcap.strategies import base

    monkeypatch.setattr(base, "attention_probabilities", lambda model, ids, mask: planted_attention(ids, mask))
    assert prune_model(name, context(tiny_model, ratio=0.125))["removed_heads"] == removed


def test_gradient_scores_are_normalised_per_layer(tiny_model):
    """Michel et al. normalise each layer's importance to unit L2 norm before the global ranking."""
    scores = torch.tensor(prune_model("head_gradient", context(tiny_model, ratio=0.5))["head_scores"])
    assert torch.allclose(scores.norm(dim=1), torch.ones(2), atol=1e-6)


@pytest.mark.parametrize("name", ["mcap", "mcap_iterative"])
def test_a_learned_strategy_prunes_with_the_scores_it_is_given(tiny_model, name):
    """The prune stage gives a learned strategy its controller's scores for the task and pruning seed."""
    scores = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]]
    strategy = get_strategy(name)
    with pytest.raises(McapError, match="no controller scores for 'toy' at ratio 0.5"):
        strategy.score_heads(context(tiny_model, 0.5, seed=1))
    assert torch.allclose(strategy.score_heads(context(tiny_model, 0.5, seed=1, learned=scores)), torch.tensor(scores))


@pytest.mark.parametrize("name", [n for n in known_strategies() if not get_strategy(n).seeded])
def test_a_strategy_that_says_it_draws_nothing_prunes_alike_at_every_pruning_seed(tiny_model_factory, name):
    """It runs at the first pruning seed only, so it must not depend on the seed; head_random must."""
    records = [prune_model(name, context(tiny_model_factory(), ratio=0.25, seed=seed)) for seed in (1, 2)]
    assert records[0]["removed_heads"] == records[1]["removed_heads"]
    assert records[0]["head_scores"] == records[1]["head_scores"]
    assert records[0]["per_head_weight_density"] == records[1]["per_head_weight_density"]
    drawn = [prune_model("head_random", context(tiny_model_factory(), ratio=0.25, seed=seed)) for seed in (1, 2)]
    assert drawn[0]["removed_heads"] != drawn[1]["removed_heads"]


def test_the_readme_example_strategy_prunes_the_lowest_scored_heads(tiny_model):
    """The README's "Adding a pruning strategy" example is code that runs, not a sketch."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    source = readme.split("# src/mcap/strategies/head_norm.py\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(source, "README.md", "exec"), namespace)  # noqa: S102 -- the README is this repository's own text
    strategy = namespace["HeadNorm"]()
    outcome = strategy.apply(context(tiny_model, ratio=0.5))
    assert outcome.head_scores.shape == (2, 4) and sum(map(len, outcome.removed_heads.values())) == 4
    assert strategy.label.startswith("6c. ")


def test_structured_gradient_removes_heads_and_neurons_up_to_the_mac_budget_and_saves_loadably(tiny_model, tmp_path):
    from mcap.budget import UnitCosts
    from mcap.evaluate import encoder_macs
    from mcap.ffn import ffn_layout
    from mcap.heads import head_layout
    from mcap.modeling import load_model, save_model

    model, tokenizer = tiny_model
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    record = prune_model("structured_gradient", context(tiny_model, ratio=0.4))
    config = model.config
    full = sum(encoder_macs(config, [range(4), range(4)], 32).values())
    left = sum(encoder_macs(config, head_layout(model), 32, ffn_layout(model)).values())
    cheapest = UnitCosts.of(config, 32).neuron
    assert 0.4 * full - cheapest < full - left <= 0.4 * full  # the budget, met to within one neuron
    assert record["removed_mac_fraction"] == pytest.approx((full - left) / full)
    assert record["ffn_widths"] == ffn_layout(model) and sum(record["ffn_widths"]) < 2 * config.intermediate_size
    # The probe is undone: every surviving weight is the pre-trained one (the classifier head included).
    assert torch.equal(model.classifier.weight, before["classifier.weight"])
    save_model(model, tokenizer, tmp_path / "pruned", record)
    loaded, _tokenizer, _record = load_model(tmp_path / "pruned")
    assert ffn_layout(loaded) == ffn_layout(model) and head_layout(loaded) == head_layout(model)
    batch = tokenizer(["a short test sentence", "another one"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, model.eval()(**batch).logits, atol=1e-6)


def test_structured_mcap_removes_the_lowest_delta_heads_and_neuron_groups_of_its_controller(tiny_model):
    from mcap.budget import UnitCosts
    from mcap.ffn import ffn_layout

    groups = [[0.9] * 8, [0.9] * 8]  # FFN width 64 in groups of 8
    groups[1][3] = groups[0][6] = 0.1
    scores = {"heads": [[0.2, 0.9, 0.9, 0.9], [0.9, 0.9, 0.9, 0.9]], "neuron_groups": groups, "neuron_group_size": 8}
    model = tiny_model[0]
    costs = UnitCosts.of(model.config, 32)
    total = 8 * costs.head + 128 * costs.neuron
    record = prune_model("structured_mcap", context(tiny_model, (costs.head + 16 * costs.neuron) / total, seed=1,
                                                    learned=scores))
    assert record["kind"] == "structured" and record["removed_heads"] == {"0": [0]}
    assert ffn_layout(model) == [56, 56]  # one whole group from each layer
    assert record["removed_mac_fraction"] == pytest.approx((costs.head + 16 * costs.neuron) / total)
    with pytest.raises(McapError, match=r"no controller scores for 'toy'"):
        get_strategy("structured_mcap").apply(context(tiny_model, 0.3, seed=2))


def test_layer_drop_keeps_the_bottom_layers_within_the_budget_and_saves_and_times_against_every_layer(
        tiny_model_factory, tmp_path):
    from mcap.evaluate import mac_estimate
    from mcap.modeling import load_model, save_model, unpruned_twin

    tiny_model = tiny_model_factory()
    model, tokenizer = tiny_model
    bottom = model.base_model.encoder.layer[0]
    record = prune_model("layer_drop", context(tiny_model, 0.7))  # 2 layers: 0.7 drops 1, never more than asked
    assert model.config.num_hidden_layers == 1 and model.base_model.encoder.layer[0] is bottom
    assert record["removed_mac_fraction"] == pytest.approx(0.5) and record["removed_heads_count"] == 4
    assert record["kept_heads_count"] == 4 and record["notes"] == ["kept the bottom 1 of 2 layers"]
    batch = tokenizer(["a good film", "bad"], padding=True, return_tensors="pt")
    save_model(model, tokenizer, tmp_path / "dropped", record)
    loaded, _tokenizer, _record = load_model(tmp_path / "dropped")
    with torch.inference_mode():
        assert torch.allclose(loaded(**batch).logits, model(**batch).logits, atol=1e-6)
    assert len(unpruned_twin(loaded).base_model.encoder.layer) == 2  # the latency reference has every layer
    assert mac_estimate(loaded, [(2, 16)])["speedup"] == pytest.approx(2.0)
    unchanged = prune_model("layer_drop", context(tiny_model_factory(), 0.2))  # below one layer's share of the MACs
    assert unchanged["removed_mac_fraction"] == 0 and "nothing dropped" in unchanged["notes"][0]


def test_head_gradient_ft_measures_the_fine_tuned_model_then_restores_the_pretrained_weights_once_per_seed(
        tiny_model_factory, monkeypatch):
    import mcap.strategies.head_gradient_ft as fine_tuned_gradient

    model, tokenizer = tiny_model_factory()
    pretrained = {name: value.clone() for name, value in model.state_dict().items()}
    fine_tunings = []
    real = fine_tuned_gradient.fine_tune_in_place

    def counted(context):
        fine_tunings.append(context.seed)
        real(context)
        moved = [name for name, value in context.model.state_dict().items() if not torch.equal(value, pretrained[name])]
        assert "bert.embeddings.word_embeddings.weight" in moved  # every weight trains, not the task head alone

    monkeypatch.setattr(fine_tuned_gradient, "_SCORES", {})
    monkeypatch.setattr(fine_tuned_gradient, "fine_tune_in_place", counted)
    strategy = get_strategy("head_gradient_ft")
    first = strategy.seeded_scores(context((model, tokenizer), ratio=0.25, seed=5))
    assert all(torch.equal(value, pretrained[name]) for name, value in model.state_dict().items())  # restored
    again = strategy.seeded_scores(context((model, tokenizer), ratio=0.5, seed=5))  # another ratio: no new fine-tuning
    assert fine_tunings == [5] and torch.equal(first, again)
    before = get_strategy("head_gradient").seeded_scores(context((model, tokenizer), ratio=0.25, seed=5))
    assert not torch.allclose(first, before)  # measured on another model than the probe-only one
    assert torch.allclose(first.norm(dim=1), torch.ones(first.shape[0]))  # normalised per layer


def test_head_gradient_ft_needs_the_training_settings(tiny_model, monkeypatch):
    import mcap.strategies.head_gradient_ft as fine_tuned_gradient

    monkeypatch.setattr(fine_tuned_gradient, "_SCORES", {})
    bare = context(tiny_model, ratio=0.25)
    bare.training = None
    with pytest.raises(McapError, match="no training settings"):
        get_strategy("head_gradient_ft").seeded_scores(bare)
