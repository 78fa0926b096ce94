"""Fine-tuning and evaluation of sequence classifiers (paper §III.C).

Protocol: AdamW with linear warm-up/decay, dynamic padding over batches of sentences of similar length, one run
per learning rate of the grid, the learning rate with the best validation score kept. bf16 autocast on a GPU, fp32 on
the CPU. Weights zeroed by unstructured pruning stay zero during fine-tuning.

Training runs through Hugging Face Accelerate, in one process or in N under ``accelerate launch``
(``train.num_processes``, see :mod:`mcap.distributed`): the same code path either way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from mcap.devices import autocast
from mcap.modeling import encoder_linears, reset_task_head
from mcap.params import TrainSettings

log = logging.getLogger(__name__)


def make_accelerator():
    """The training engine for one process or for N started by ``accelerate launch``.

    bf16 mixed precision on CUDA, fp32 on the CPU. ``split_batches``: ``train.batch_size`` is the
    global batch, divided among the processes, so N processes optimise the same objective as one.
    """
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs

    cuda = torch.cuda.is_available()
    # The keep-masks of unstructured pruning are buffers that never change: DDP need not re-send them every step.
    return Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda else "no",
                       dataloader_config=DataLoaderConfiguration(split_batches=True),
                       kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)])


def encode(tokenizer, frame: pd.DataFrame, max_seq_len: int) -> list[dict]:
    """Tokenise every sentence once: [{input_ids, attention_mask, labels}] without padding."""
    encoded = tokenizer(list(frame["sentence"]), truncation=True, max_length=max_seq_len)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": int(label)}
        for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], frame["label"])
    ]


class LengthGroupedBatches(Sampler[list[int]]):
    """Shuffled batches of sentences of similar length, as Hugging Face's ``group_by_length`` draws them.

    Each epoch: a random order of the sentences, cut into windows of ``window`` batches; each window sorted by length
    and cut into full batches; the full batches in a random order, and the short remainder last (where Accelerate
    expects it, :func:`share_weights`). With dynamic padding a batch of random sentences pads to its longest one:
    2-3x the real tokens on SST-2, CoLA and SUBJ, against 1.05-1.16x within a window. Every draw comes from
    ``generator``, so one fine-tuning seed gives every pruned model the same batches in the same order.
    """

    drop_last = False  # read by Accelerate, which splits each batch among processes

    def __init__(self, lengths: list[int], batch_size: int, generator: torch.Generator, window: int = 50):
        super().__init__()
        self.lengths, self.batch_size, self.generator, self.window = lengths, batch_size, generator, window

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        full = len(order) - len(order) % self.batch_size
        span = self.window * self.batch_size
        batches = []
        for start in range(0, full, span):
            window = sorted(order[start:min(start + span, full)], key=self.lengths.__getitem__)
            batches += [window[i:i + self.batch_size] for i in range(0, len(window), self.batch_size)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()]
        yield from batches
        if full < len(order):
            yield order[full:]


def batch_loader(
    tokenizer, examples: list[dict], batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
) -> DataLoader:
    """Pad each batch to its own longest sentence (dynamic padding); ``shuffle``: :class:`LengthGroupedBatches`
    drawn from ``generator``, else batches in the given order. For a GPU, two worker processes pad the next batches
    into pinned memory while it computes; on the CPU they would only compete for its cores."""

    def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
        return tokenizer.pad(batch, return_tensors="pt")  # input_ids/attention_mask: (B, L_max), labels: (B,)

    cuda = torch.cuda.is_available()
    batching = ({"batch_sampler": LengthGroupedBatches([len(e["input_ids"]) for e in examples], batch_size, generator)}
                if shuffle else {"batch_size": batch_size})
    return DataLoader(examples, **batching, collate_fn=collate, num_workers=2 if cuda else 0, pin_memory=cuda)


def make_loader(
    tokenizer, frame: pd.DataFrame, batch_size: int, max_seq_len: int,
    shuffle: bool = False, generator: torch.Generator | None = None,
) -> DataLoader:
    """Tokenise once and batch with dynamic padding."""
    return batch_loader(tokenizer, encode(tokenizer, frame, max_seq_len), batch_size, shuffle, generator)


def scoring_loader(tokenizer, frame: pd.DataFrame, batch_size: int, max_seq_len: int) -> DataLoader:
    """Batches of the sentences in order of length, each padded little: for scores that do not depend on the order
    (loss, accuracy, MCC), 2-3x fewer tokens than batches in the split's order."""
    examples = encode(tokenizer, frame, max_seq_len)
    return batch_loader(tokenizer, sorted(examples, key=lambda example: len(example["input_ids"])), batch_size)


def batches_on(loader: DataLoader, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    for batch in loader:
        yield {name: tensor.to(device) for name, tensor in batch.items()}


@torch.inference_mode()
def predict_logits(model: nn.Module, loader: DataLoader, accelerator=None) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, 2) as float32, labels (N,)) over a loader. With the ``accelerator`` that prepared ``loader``, each
    process scores its share and every process gets all N rows (the top-up of the last batch dropped)."""
    device = next(model.parameters()).device
    model.eval()
    logits, labels = [], []
    for batch in batches_on(loader, device):
        with autocast(device):
            output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        rows = (output.logits.float(), batch["labels"])
        if accelerator is not None:
            rows = accelerator.gather_for_metrics(rows)
        logits.append(rows[0].cpu())
        labels.append(rows[1].cpu())
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Cross-entropy loss, accuracy and Matthews correlation of 2-class logits."""
    # Imported here: sklearn takes ~0.6 s to import, and most stages that import this module never evaluate.
    from sklearn.metrics import accuracy_score, matthews_corrcoef

    loss = nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels).long()).item()
    predictions = logits.argmax(axis=1)
    return {
        "loss": float(loss),
        "accuracy": float(accuracy_score(labels, predictions)),
        "mcc": float(matthews_corrcoef(labels, predictions)),
    }


def evaluate(model: nn.Module, loader: DataLoader, accelerator=None) -> dict[str, float]:
    return classification_metrics(*predict_logits(model, loader, accelerator))


KEEP_MASK = "zero_keep_mask"  # buffer name of a zeroed Linear's keep-mask


def zeroed_linears(model: nn.Module) -> list[nn.Linear]:
    """Encoder Linears with exactly-zero weights (what unstructured pruning leaves)."""
    return [linear for _name, linear in encoder_linears(model) if not bool((linear.weight != 0).all())]


@contextmanager
def zeros_kept(model: nn.Module, enabled: bool = True) -> Iterator[list[nn.Linear]]:
    """Within the context, each zeroed encoder Linear carries its keep-mask as a (non-persistent)
    buffer, so the mask moves wherever the weight moves (``accelerator.prepare``, ``.to``);
    :func:`train_step` re-applies it after every step. Yields the zeroed Linears; buffers go at exit."""
    linears = zeroed_linears(model) if enabled else []
    for linear in linears:
        linear.register_buffer(KEEP_MASK, linear.weight.detach() != 0, persistent=False)  # (out, in) bool
    try:
        yield linears
    finally:
        for linear in linears:
            delattr(linear, KEEP_MASK)


def train_epochs(
    model: nn.Module,
    train_loader: DataLoader,
    validation_loader: DataLoader,
    learning_rate: float,
    settings: TrainSettings,
    accelerator,
    keep_zeros: bool = False,
    description: str = "train",
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train for ``settings.epochs``; return the trained (unwrapped) model and one record per epoch (train loss
    averaged over processes, validation metrics on the whole validation set, each process scoring its share)."""
    steps = settings.epochs * len(train_loader)
    optimizer, scheduler = optimizer_with_schedule(model, learning_rate, settings, steps)
    sentences = len(train_loader.dataset)
    history = []
    with zeros_kept(model, keep_zeros) as zeroed:
        model, optimizer, train_loader, validation_loader, scheduler = accelerator.prepare(
            model, optimizer, train_loader, validation_loader, scheduler)
        for epoch in range(1, settings.epochs + 1):
            model.train()
            batches = tqdm(train_loader, desc=f"{description} epoch {epoch}", leave=False,
                           disable=not accelerator.is_local_main_process)
            losses = torch.stack([
                train_step(model, batch, optimizer, scheduler, zeroed, accelerator,
                           share_weights(step, sentences, settings.batch_size, accelerator))
                for step, batch in enumerate(batches)]).tolist()
            train_loss = accelerator.reduce(torch.tensor(float(np.mean(losses)), device=accelerator.device), "mean")
            scores = evaluate(accelerator.unwrap_model(model), validation_loader, accelerator)
            record = {"epoch": epoch, "train_loss": float(train_loss), **{f"val_{k}": v for k, v in scores.items()}}
            log.info("%s epoch %d: %s", description, epoch, _format(record))
            history.append(record)
    return accelerator.unwrap_model(model), history


def share_weights(step: int, sentences: int, batch_size: int, accelerator) -> torch.Tensor | None:
    """(batch_size / N,) weights of this process's share of the global batch ``step`` in the loss, when N > 1
    processes split every batch; None for one process (the plain mean).

    Accelerate tops the last, short batch up with sentences from the first, so that every process gets a share and
    none waits for the others' gradients. The top-ups weigh 0 and each of the b real sentences N / b: DDP averages
    the processes' gradients, so the step follows the mean loss over the b sentences, the objective of one process.
    """
    processes = accelerator.num_processes
    if processes == 1:
        return None
    share = batch_size // processes
    real = min(batch_size, sentences - step * batch_size)  # b
    mine = min(max(real - accelerator.process_index * share, 0), share)  # the real ones come first in the batch
    weights = torch.zeros(share, device=accelerator.device)
    weights[:mine] = processes / real
    return weights


def train_step(model, batch, optimizer, scheduler, zeroed: list[nn.Linear], accelerator,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """One optimiser step on a batch already on the accelerator's device (mixed precision comes from ``prepare``),
    on the mean loss, or on the sum of per-sentence losses times ``weights`` (:func:`share_weights`); the ``zeroed``
    Linears (inside :func:`zeros_kept`) get their zeros back. Returns the loss, detached on the device: reading it
    every step (``.item()``) would make the CPU wait for the GPU at each step."""
    if weights is None:
        loss = model(**batch).loss
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (share, 2)
        loss = (nn.functional.cross_entropy(logits.float(), batch["labels"], reduction="none") * weights).sum()
    accelerator.backward(loss)
    accelerator.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        for linear in zeroed:
            linear.weight.mul_(getattr(linear, KEEP_MASK))
    return loss.detach()


def adamw(parameters, learning_rate: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel, as Hugging Face ``Trainer`` uses: on 2 CPU cores the default
    per-tensor implementation is several times slower a step (measured: reports/benchmarks.md, (a))."""
    return torch.optim.AdamW(parameters, lr=learning_rate, fused=True)


def optimizer_with_schedule(model: nn.Module, learning_rate: float, settings: TrainSettings, steps: int):
    """AdamW (weight decay except on biases and LayerNorm weights) with a linear warm-up over
    ``settings.warmup_ratio`` of ``steps``, then a linear decay to 0."""
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": settings.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = adamw(groups, learning_rate)
    warmup = math.ceil(settings.warmup_ratio * steps)

    def schedule(step: int) -> float:  # linear warm-up, then linear decay to 0
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _format(record: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in record.items() if key != "epoch")


@dataclass
class FinetuneResult:
    model: nn.Module
    learning_rate: float
    histories: dict[float, list[dict[str, float]]]  # one per learning rate of the grid
    is_main_process: bool  # under `accelerate launch` only the main process writes outputs


def finetune_grid(
    load_initial, train: pd.DataFrame, validation: pd.DataFrame, tokenizer, settings: TrainSettings, seed: int,
    keep_zeros: bool,
) -> FinetuneResult:
    """Fine-tune a fresh copy (``load_initial()``) per learning rate of ``settings.learning_rates``; keep the best.

    ``seed`` (the fine-tuning seed) alone sets the task head's initialisation, the batch order and dropout: two
    pruned models fine-tuned at one seed start from the same head and see the same batches in the same order, so
    their difference is the pruning's (a paired comparison). The score is the last epoch's validation
    ``settings.select_metric`` (paper: best of lr ∈ {2,3,4,5}e-5).
    """
    from mcap.seeding import seed_everything

    accelerator = make_accelerator()
    histories: dict[float, list[dict[str, float]]] = {}
    best_model, best_rate, best_score = None, None, -math.inf
    for learning_rate in settings.learning_rates:
        initial = load_initial()
        # Seeded after loading: building a model draws from the global RNG, as many numbers as it has weights, so
        # seeding before would give each pruned architecture another dropout stream. Every lr and every strategy
        # starts from the same state and batch order.
        generator = seed_everything(seed)
        train_loader = make_loader(tokenizer, train, settings.batch_size, settings.max_seq_len, True, generator)
        validation_loader = scoring_loader(tokenizer, validation, settings.batch_size, settings.max_seq_len)
        reset_task_head(initial, seed)
        model, histories[learning_rate] = train_epochs(
            initial, train_loader, validation_loader, learning_rate, settings, accelerator, keep_zeros,
            description=f"lr {learning_rate:g}",
        )
        accelerator.free_memory()  # drop the prepared references before the next lr
        score = histories[learning_rate][-1][f"val_{settings.select_metric}"]
        if score > best_score:
            best_model, best_rate, best_score = model, learning_rate, score
    log.info("selected lr %g (validation %s %.4f) on %d process(es)", best_rate, settings.select_metric, best_score,
             accelerator.num_processes)
    return FinetuneResult(best_model, best_rate, histories, accelerator.is_main_process)
