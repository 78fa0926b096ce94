"""Fine-tuning: it learns, it is deterministic, unstructured sparsity survives it, and it scales
out to several processes under `accelerate launch`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import make_sentences
from mcap.grid import cell_path, finetuned_dir, pruned_dir
from mcap.heads import prune_heads
from mcap.modeling import load_model, save_model
from mcap.params import TrainSettings
from mcap.splits import write_splits
from mcap.training import KEEP_MASK, LengthGroupedBatches, finetune_grid, zeroed_linears, zeros_kept

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = TrainSettings(epochs=6, learning_rates=[1e-3], batch_size=16, max_seq_len=32, weight_decay=0.01,
                         warmup_ratio=0.1, select_metric="accuracy")


@pytest.fixture
def saved_tiny(tiny_model, tmp_path):
    model, tokenizer = tiny_model
    save_model(model, tokenizer, tmp_path / "model", {"kind": "none"})
    return tmp_path / "model", tokenizer


def run(saved, learning_rates=(3e-3,), keep_zeros=False):
    model_dir, tokenizer = saved
    return finetune_grid(lambda: load_model(model_dir)[0], make_sentences(128, 1), make_sentences(32, 2), tokenizer,
                         SETTINGS.model_copy(update={"learning_rates": list(learning_rates)}), seed=11, keep_zeros=keep_zeros)


def test_fine_tuning_learns_a_learnable_task(saved_tiny):
    history = run(saved_tiny).histories[3e-3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.8


def test_same_seed_gives_identical_metrics(saved_tiny):
    assert run(saved_tiny).histories == run(saved_tiny).histories


def test_learning_rate_with_the_best_validation_score_is_kept(saved_tiny):
    result = run(saved_tiny, learning_rates=(1e-6, 3e-3))
    scores = {rate: history[-1]["val_accuracy"] for rate, history in result.histories.items()}
    assert result.learning_rate == max(scores, key=scores.get) == 3e-3


def test_length_grouped_batches_cover_every_sentence_once_and_pad_little():
    lengths = torch.randint(3, 60, (1000,), generator=torch.Generator().manual_seed(0)).tolist()
    batches = list(LengthGroupedBatches(lengths, 32, torch.Generator().manual_seed(1)))
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert [len(batch) for batch in batches] == [32] * 31 + [8]  # the short batch last, as Accelerate expects it
    assert len(LengthGroupedBatches(lengths, 32, torch.Generator())) == len(batches)
    padded = sum(max(lengths[i] for i in batch) * len(batch) for batch in batches[:-1])
    random_padded = sum(max(lengths[i] for i in range(s, s + 32)) * 32 for s in range(0, 992, 32))
    assert padded < 0.6 * random_padded


def test_length_grouped_batches_follow_the_generator_and_change_each_epoch():
    lengths = list(range(5, 105))

    def epochs(seed):
        sampler = LengthGroupedBatches(lengths, 8, torch.Generator().manual_seed(seed), window=4)
        return list(sampler), list(sampler)

    first, second = epochs(3)
    assert (first, second) == epochs(3)
    assert first != second and first != epochs(4)[0]


def first_steps(monkeypatch, model_dir: Path, tokenizer, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(the task head's weights and torch's RNG state (dropout) at the first step, the input ids of every batch) of
    one fine-tuning at ``seed``."""
    import mcap.training

    heads, batches, original = [], [], mcap.training.train_step

    def recording_step(model, batch, *args):
        if not heads:
            heads.append((model.classifier.weight.detach().clone(), torch.get_rng_state()))
        batches.append(batch["input_ids"].clone())
        return original(model, batch, *args)

    monkeypatch.setattr(mcap.training, "train_step", recording_step)
    finetune_grid(lambda: load_model(model_dir)[0], make_sentences(64, 1), make_sentences(16, 2), tokenizer,
                  SETTINGS.model_copy(update={"epochs": 1}), seed=seed, keep_zeros=False)
    monkeypatch.undo()
    return heads[0], batches


def test_strategies_at_one_fine_tuning_seed_start_from_one_head_and_see_the_same_batches(saved_tiny, tmp_path,
                                                                                         monkeypatch):
    """Pairing by construction: the pruning (here heads removed, and a head a probe had trained) changes the model,
    never the fine-tuning seed's head initialisation, dropout stream or batch order."""
    model_dir, tokenizer = saved_tiny
    pruned, _, _ = load_model(model_dir)
    prune_heads(pruned, {0: [1, 2], 1: [0]})
    with torch.no_grad():
        pruned.classifier.weight.fill_(0.5)  # what a probe at pruning time may leave behind
    save_model(pruned, tokenizer, tmp_path / "pruned", {"kind": "head"})

    (head, rng), batches = first_steps(monkeypatch, model_dir, tokenizer, seed=11)
    (pruned_head, pruned_rng), pruned_batches = first_steps(monkeypatch, tmp_path / "pruned", tokenizer, seed=11)
    assert torch.equal(head, pruned_head)
    assert torch.equal(rng, pruned_rng)  # the same dropout stream
    shallow = load_model(model_dir)[0]  # a model with a layer less: building it draws fewer numbers
    shallow.base_model.encoder.layer, shallow.config.num_hidden_layers = shallow.base_model.encoder.layer[:1], 1
    save_model(shallow, tokenizer, tmp_path / "shallow", {"kind": "structured"})
    (_head, shallow_rng), _batches = first_steps(monkeypatch, tmp_path / "shallow", tokenizer, seed=11)
    assert torch.equal(rng, shallow_rng)
    assert len(batches) == len(pruned_batches) and all(map(torch.equal, batches, pruned_batches))

    (other_head, _rng), other_batches = first_steps(monkeypatch, tmp_path / "pruned", tokenizer, seed=12)
    assert not torch.equal(head, other_head)
    assert not all(map(torch.equal, batches, other_batches))


def test_zeroed_weights_stay_zero_during_fine_tuning(saved_tiny, tmp_path):
    model_dir, tokenizer = saved_tiny
    model, _, _ = load_model(model_dir)
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.weight[:, :10] = 0
    save_model(model, tokenizer, tmp_path / "sparse", {"kind": "unstructured"})
    result = run((tmp_path / "sparse", tokenizer), keep_zeros=True)
    weight = result.model.bert.encoder.layer[0].output.dense.weight
    assert torch.count_nonzero(weight[:, :10]) == 0
    assert zeroed_linears(result.model) == [result.model.bert.encoder.layer[0].output.dense]
    assert not hasattr(result.model.bert.encoder.layer[0].output.dense, KEEP_MASK)  # training leaves no buffer behind


def test_keep_masks_travel_with_their_weights(tiny_model):
    """On a GPU, accelerate moves the model after the masks are made: each mask must follow its weight
    (the meta device stands in for CUDA on a CPU-only machine)."""
    model = tiny_model[0]
    with torch.no_grad():
        model.bert.encoder.layer[1].attention.self.key.weight[0] = 0
    with zeros_kept(model) as zeroed:
        model.to("meta")
        assert zeroed and all(getattr(linear, KEEP_MASK).device == linear.weight.device for linear in zeroed)


def run_finetune_stage(workdir: Path, model_dir: Path, num_processes: int, train_sentences: int = 128,
                       dropout: bool = True) -> subprocess.CompletedProcess:
    """The real finetune stage script on a tiny model and a learnable task, in ``workdir``."""
    model, tokenizer, _pruning = load_model(model_dir)
    if not dropout:  # processes draw their own dropout masks
        model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    save_model(model, tokenizer, workdir / pruned_dir("toy", "none", 0.0, 0), {"kind": "none"})
    write_splits({"train": make_sentences(train_sentences, 1), "validation": make_sentences(33, 2),
                  "test": make_sentences(32, 3)}, workdir / "data/processed/toy")
    params = {"train": {"epochs": 6, "learning_rates": [3e-3], "batch_size": 16, "max_seq_len": 32, "weight_decay": 0.01,
                        "warmup_ratio": 0.1, "select_metric": "accuracy", "num_processes": num_processes}}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    command = [sys.executable, str(ROOT / "stages" / "finetune.py"), "--task", "toy", "--strategy", "none", "--ratio", "0.0",
               "--seed", "11"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, check=False, timeout=600)


def test_finetune_stage_trains_on_two_processes_under_accelerate(saved_tiny, tmp_path):
    result = run_finetune_stage(tmp_path, saved_tiny[0], num_processes=2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "relaunching on 2 processes" in result.stderr
    assert result.stderr.count("on 2 process(es)") == 2  # both ranks trained, in one process group
    cell = json.loads((tmp_path / cell_path("toy", "none", 0.0, 11)).read_text())
    assert cell["runs"]["0"]["validation"]["accuracy"] > 0.8 and cell["runs"]["0"]["test"]["accuracy"] > 0.8
    assert (tmp_path / finetuned_dir("toy", "none", 0.0, 11, 0) / "model.safetensors").is_file()


def test_two_processes_optimise_the_objective_of_one(saved_tiny, tmp_path):
    """100 train sentences in batches of 16 end in a batch of 4, which accelerate tops up to 16 so that both processes
    get a share; weighing the top-ups 0 keeps the objective of one process. Validation (33 sentences) is shared out
    and gathered whole."""
    cells, curves = [], []
    for processes in (1, 2):
        workdir = tmp_path / f"processes-{processes}"
        result = run_finetune_stage(workdir, saved_tiny[0], processes, train_sentences=100, dropout=False)
        assert result.returncode == 0, result.stderr[-3000:]
        cells.append(json.loads((workdir / cell_path("toy", "none", 0.0, 11)).read_text())["runs"]["0"])
        curves.append(pd.read_csv(next((workdir / "reports/finetune").rglob("train/loss.tsv")), sep="\t")["loss"])
    one, two = cells
    assert two["validation"]["loss"] == pytest.approx(one["validation"]["loss"], rel=1e-4)
    assert two["test"]["loss"] == pytest.approx(one["test"]["loss"], rel=1e-4)
    assert len(curves[0]) == 6 and curves[1].to_numpy() == pytest.approx(curves[0].to_numpy(), rel=1e-4)


def test_batch_that_cannot_be_shared_equally_is_refused(saved_tiny, tmp_path):
    result = run_finetune_stage(tmp_path, saved_tiny[0], num_processes=3)
    assert result.returncode == 2
    assert "'train.batch_size' (16) must be a multiple of 'train.num_processes' (3)" in result.stderr
    assert not (tmp_path / "models/finetuned").exists()
