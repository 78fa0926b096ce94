"""``params.yaml`` read into one typed, checked settings class per section (pydantic models).

Each class mirrors its section key for key: a field's annotation is the type its value must have (strict: no
string is taken for a number, no ``true`` for an integer), a field default marks a key that may be left out, an
unknown key is an error (``extra="forbid"``, so a typo does not silently fall back to nothing), and ``check`` holds
what a type cannot say. Errors name the dotted key and what it accepts. A new param touches params.yaml, its class
here and the code that uses it.

Stages get a :class:`Params`, which reads a section on first use: a stage checks only the sections
it reads (DVC reruns it only for the keys its ``params:`` list names).
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mcap.errors import McapError

PARAMS_FILE = Path("params.yaml")
SPLIT_METHODS = ("grouped", "random")
SELECT_METRICS = ("mcc", "accuracy")  # validation metrics where higher is better


class _ParamsLoader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where ``5e-05`` (no dot) is a string; DVC writes YAML 1.2, and that is how it
    stores every ``-S`` float below 1e-4 (``-S 'train.learning_rates=[5e-5]'``). Read such floats as floats."""


_ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The raw mapping of ``path``."""
    if not path.is_file():
        raise McapError(f"{path}: not found; run stages from the repository root")
    try:
        params = yaml.load(path.read_text(), Loader=_ParamsLoader)
    except yaml.YAMLError as error:
        raise McapError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(params, dict):
        raise McapError(f"{path}: expected a mapping of sections at the top level")
    return params


# --------------------------------------------------------------------------------------------
# Typed reading
# --------------------------------------------------------------------------------------------


class Section(BaseModel):
    """A params.yaml section (``section`` names it; "" is the top level) as a typed, checked, frozen object."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)
    section: ClassVar[str]

    @classmethod
    def read(cls, params: dict[str, Any]) -> typing.Self:
        """Build the section from the raw params: types checked, defaults filled, then ``check``."""
        raw = params if not cls.section else params.get(cls.section, {})
        if not isinstance(raw, dict):
            raise McapError(f"params.yaml: '{cls.section}' must be a mapping of keys, got {raw!r}")
        if not cls.section:  # the top level also holds the other sections
            raw = {key: value for key, value in raw.items() if key in cls.model_fields}
        try:
            return cls.model_validate(raw)
        except ValidationError as error:
            raise McapError(cls._explain(error, raw)) from None

    @classmethod
    def _explain(cls, error: ValidationError, raw: dict[str, Any]) -> str:
        """The first problem, as "params.yaml: '<dotted key>' must be <what it accepts>, got <value>"."""
        unknown = sorted(str(e["loc"][0]) for e in error.errors() if e["type"] == "extra_forbidden")
        if unknown:
            return (f"params.yaml: unknown key(s) {', '.join(repr(cls._key(k)) for k in unknown)}; "
                    f"'{cls.section}' accepts {', '.join(sorted(cls.model_fields))}")
        first = error.errors()[0]
        name = str(first["loc"][0])
        if first["type"] == "missing":
            return f"params.yaml: missing key '{cls._key(name)}'"
        return f"params.yaml: '{cls._key(name)}' must be {_describe(cls.model_fields[name].annotation)}, got {raw[name]!r}"

    @model_validator(mode="after")
    def _checked(self) -> typing.Self:
        self.check()
        return self

    def check(self) -> None:
        """What the types cannot say; each failure through :meth:`require`."""

    def require(self, name: str, holds: bool, accepted: str) -> None:
        if not holds:
            raise McapError(f"params.yaml: '{self._key(name)}' must be {accepted}, got {getattr(self, name)!r}")

    @classmethod
    def _key(cls, name: str) -> str:
        return f"{cls.section}.{name}" if cls.section else name


def _describe(hint: Any) -> str:
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return f"{_describe(next(a for a in arguments if a is not type(None)))} or null"
    if origin is list:
        return f"a list of {_describe(arguments[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        return f"a mapping of names to {_describe(arguments[1]).removeprefix('a ')}s"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[hint]


def _distinct(values: list) -> bool:
    return len(set(values)) == len(values)


def _fraction(value: float) -> bool:
    """A share of heads, weights or MACs to remove."""
    return 0 <= value < 1


# --------------------------------------------------------------------------------------------
# The sections, in params.yaml's order
# --------------------------------------------------------------------------------------------


class TopLevel(Section):
    section: ClassVar[str] = ""
    seeds: list[int]  # fine-tuning seeds: the task head's initialisation, batch order and dropout
    tasks: list[str]  # every task; those outside mcap.train_tasks are transfer tasks
    strategies: list[str]  # the pruning strategies every task runs (the registry says which learn their scores)

    def check(self) -> None:  # the prune stage checks the strategies' names against the registry
        self.require("seeds", bool(self.seeds) and _distinct(self.seeds), "a non-empty list of distinct integers")
        self.require("tasks", bool(self.tasks) and _distinct(self.tasks), "a non-empty list of distinct task names")
        self.require("strategies", bool(self.strategies) and _distinct(self.strategies),
                     "a non-empty list of distinct strategy names")


class ModelSettings(Section):
    section: ClassVar[str] = "model"
    name_or_path: str


class DataSettings(Section):
    section: ClassVar[str] = "data"
    glue_dir: str
    seed: int
    validation_fraction: float
    split: str
    max_train_examples: int | None  # null = all
    max_validation_examples: int | None  # validation is scored every epoch: a cap saves time
    max_test_examples: int | None  # null = every test sentence
    extra_tasks: dict[str, str] = Field(default_factory=dict)  # name: folder with train.tsv and dev.tsv
    task_train_examples: dict[str, int | None] = Field(default_factory=dict)  # per task: max_train_examples for it

    def check(self) -> None:
        self.require("validation_fraction", 0 < self.validation_fraction < 1, "a number in (0, 1)")
        self.require("split", self.split in SPLIT_METHODS, f"one of {', '.join(SPLIT_METHODS)}")
        for name in ("max_train_examples", "max_validation_examples", "max_test_examples"):
            value = getattr(self, name)
            self.require(name, value is None or value > 0, "a positive integer or null (all)")
        self.require("task_train_examples", all(v is None or v > 0 for v in self.task_train_examples.values()),
                     "a mapping of task names to positive integers or null (all)")

    def train_examples(self, task: str) -> int | None:
        """The cap on ``task``'s train sentences: its entry in ``task_train_examples``, else ``max_train_examples``."""
        return self.task_train_examples.get(task, self.max_train_examples)

    def caps(self) -> str:
        """The train, validation and test caps as a report's setup states them (None: every sentence)."""
        overrides = "".join(f", {task} {cap}" for task, cap in self.task_train_examples.items())
        return (f"train/validation/test caps {self.max_train_examples}{overrides}/{self.max_validation_examples}/"
                f"{self.max_test_examples}")


class TrainSettings(Section):
    section: ClassVar[str] = "train"
    epochs: int
    learning_rates: list[float]  # the grid; the best on validation is kept
    batch_size: int  # the global batch (divided among processes)
    max_seq_len: int
    weight_decay: float
    warmup_ratio: float
    select_metric: str  # the validation metric that picks the learning rate
    num_processes: int = 1  # > 1: finetune runs under `accelerate launch`

    def check(self) -> None:
        for name in ("epochs", "batch_size", "max_seq_len", "num_processes"):
            self.require(name, getattr(self, name) > 0, "a positive integer")
        self.require("learning_rates", bool(self.learning_rates) and min(self.learning_rates) > 0,
                     "a non-empty list of positive numbers")
        self.require("weight_decay", self.weight_decay >= 0, "a number ≥ 0")
        self.require("warmup_ratio", 0 <= self.warmup_ratio < 1, "a number in [0, 1)")
        self.require("select_metric", self.select_metric in SELECT_METRICS, f"one of {', '.join(SELECT_METRICS)}")


class PruneSettings(Section):
    section: ClassVar[str] = "prune"
    ratios: list[float]  # fractions of heads (head strategies), encoder weights (unstructured) or MACs (structured)
    seeds: list[int]  # pruning seeds: a seeded strategy's draw and its controller; the others run at the first
    importance_examples: int  # train sentences used to score heads
    gradient_probe_steps: int  # head_gradient: classifier-only steps before taking gradients
    gradient_probe_lr: float
    imp_rounds: int
    imp_retrain_steps: int
    imp_learning_rate: float
    imp_rewind: bool

    def check(self) -> None:
        self.require("ratios", bool(self.ratios) and _distinct(self.ratios) and all(map(_fraction, self.ratios)),
                     "a non-empty list of distinct numbers in [0, 1)")
        self.require("seeds", bool(self.seeds) and _distinct(self.seeds), "a non-empty list of distinct integers")
        for name in ("importance_examples", "imp_rounds"):
            self.require(name, getattr(self, name) > 0, "a positive integer")
        for name in ("gradient_probe_steps", "imp_retrain_steps"):
            self.require(name, getattr(self, name) >= 0, "an integer ≥ 0")
        for name in ("gradient_probe_lr", "imp_learning_rate"):
            self.require(name, getattr(self, name) > 0, "a positive number")


class RankingSettings(Section):
    section: ClassVar[str] = "ranking"
    tasks: list[str] = Field(default_factory=list)  # tasks whose head rankings are scored (a stage each)
    ratios: list[float]
    seeds: list[int]  # pruning seeds, for the strategies whose scores depend on the seed
    train_examples: int

    def check(self) -> None:
        self.require("ratios", bool(self.ratios) and all(map(_fraction, self.ratios)),
                     "a non-empty list of numbers in [0, 1)")
        self.require("seeds", bool(self.seeds), "a non-empty list of integers")
        self.require("train_examples", self.train_examples > 0, "a positive integer")


class EvaluateSettings(Section):
    section: ClassVar[str] = "evaluate"
    threads: int
    batch_sizes: list[int]
    warmup: int  # untimed repetitions first
    repetitions: int
    flops_seq_len: int

    def check(self) -> None:
        for name in ("threads", "repetitions", "flops_seq_len"):
            self.require(name, getattr(self, name) > 0, "a positive integer")
        self.require("warmup", self.warmup >= 0, "an integer ≥ 0")
        self.require("batch_sizes", bool(self.batch_sizes) and min(self.batch_sizes) > 0,
                     "a non-empty list of positive integers")


RECONSTRUCTION_METHODS = ("scales", "refit")  # mcap.reconstruction: per-unit scales, or the whole projection
RECONSTRUCTION_TEACHERS = ("unpruned", "kwon_sqrt")  # towards the unpruned model, or Kwon et al.'s nearer teacher
RECOVERIES = ("distill", "cross_entropy")  # mcap.recovery: retraining after pruning, from the teacher or the labels


class PostPruneSettings(Section):
    """Structured pruning of the fine-tuned unpruned model, without retraining (Kwon et al. 2022)."""

    section: ClassVar[str] = "post_prune"
    tasks: list[str] = Field(default_factory=list)  # tasks whose fine-tuned unpruned models are pruned (a stage each)
    mac_ratios: list[float]  # fractions of encoder MACs removed, one pruned model each
    examples: int  # train sentences for the Fisher scores and the reconstruction statistics
    held_out_examples: int  # the train sentences after those: each sublayer's reconstruction error out of sample
    reconstructions: list[str]  # method/teacher (mcap.reconstruction), each scored beside none; the best on
                                # validation is deployed
    refit_ridge: float  # refit's ridge towards the current weights, a fraction of the normal equations' mean diagonal
    stop_at_failure: bool  # Kwon et al.: end the reconstruction at the first sublayer whose solve fails
    learned: list[str]  # structured strategies whose meta-controller's δ also ranks the units (a stage each)
    recoveries: list[str] = Field(default_factory=list)  # retraining after pruning (mcap.recovery), rows of its own
    recovery_mac_ratios: list[float] = Field(default_factory=list)  # the budgets recovered, among mac_ratios
    recovery_learning_rate: float = 5e-5
    distill_temperature: float = 2.0

    def check(self) -> None:
        self.require("recoveries", _distinct(self.recoveries) and set(self.recoveries) <= set(RECOVERIES),
                     f"a list of distinct names among {list(RECOVERIES)}")
        self.require("recovery_mac_ratios", set(self.recovery_mac_ratios) <= set(self.mac_ratios)
                     and _distinct(self.recovery_mac_ratios), "a list of distinct budgets among post_prune.mac_ratios")
        self.require("recovery_learning_rate", self.recovery_learning_rate > 0, "a positive number")
        self.require("distill_temperature", self.distill_temperature > 0, "a positive number")
        self.require("mac_ratios", bool(self.mac_ratios) and all(0 < r < 1 for r in self.mac_ratios)
                     and _distinct(self.mac_ratios), "a non-empty list of distinct numbers in (0, 1)")
        self.require("examples", self.examples > 0, "a positive integer")
        self.require("held_out_examples", self.held_out_examples > 0, "a positive integer")
        accepted = [f"{method}/{teacher}" for method in RECONSTRUCTION_METHODS for teacher in RECONSTRUCTION_TEACHERS]
        self.require("reconstructions", _distinct(self.reconstructions) and set(self.reconstructions) <= set(accepted),
                     f"a list of distinct names among {accepted}")
        self.require("refit_ridge", self.refit_ridge > 0, "a positive number")
        self.require("learned", _distinct(self.learned), "a list of distinct strategy names")


class DeploySettings(Section):
    """ONNX export and onnxruntime timing of models pruned before fine-tuning."""

    section: ClassVar[str] = "deploy"
    strategies: list[str]  # among prune.strategies and mcap.strategies; each fine-tuned model is exported

    def check(self) -> None:
        self.require("strategies", _distinct(self.strategies), "a list of distinct strategy names")


class Int8Settings(Section):
    """onnxruntime's dynamic INT8 quantisation of every exported model (deploy and post_prune stages)."""

    section: ClassVar[str] = "int8"
    enabled: bool  # quantise every exported model, with its accuracy against FP32 and its speed-up
    per_channel: bool  # one weight scale per output channel instead of per tensor


class ExplainSettings(Section):
    section: ClassVar[str] = "explain"
    tasks: list[str]  # tasks whose models are explained
    seed: int  # LIME's and the faithfulness sample's draws
    lime_samples: int  # for the paper's texts (figures)
    shap_max_evals: int
    top_k: int  # at most this many supporting words per rationale
    faithfulness_examples: int
    faithfulness_lime_samples: int  # for each faithfulness sentence: many sentences, so fewer samples
    faithfulness_shap_max_evals: int
    texts: list[str] = Field(default_factory=list)  # extra texts besides the paper's T1-T3

    def check(self) -> None:
        for name in type(self).model_fields:
            if name not in ("tasks", "texts", "seed"):
                self.require(name, getattr(self, name) > 0, "a positive integer")


class McapSettings(Section):
    section: ClassVar[str] = "mcap"
    strategies: list[str]  # the learned strategies whose controllers are trained (a stage per ratio)
    train_tasks: list[str]  # meta-training tasks (a subset of tasks)
    map_examples: int
    map_length: int
    cnn_maps: int
    cnn_epochs: int
    cnn_lr: float
    cnn_seed: int
    pool_examples: int | None  # null = the whole train split
    k: int
    passes: int
    update_every: int
    lr: float
    conditional_lr: float
    task_weight: float
    cnn_weight: float
    noise_start: float
    noise_end: float
    cnn_instances: int
    iterative_step: float
    iterative_passes: int
    neuron_group_size: int  # structured_mcap: FFN neurons gated together
    seeds: list[int]  # controllers trained, per ratio; a pruning seed picks one
    cnn_images: str | None = None  # folder with maps.npy + labels.txt; null = synthetic

    def check(self) -> None:
        self.require("strategies", _distinct(self.strategies), "a list of distinct strategy names")
        self.require("train_tasks", bool(self.train_tasks) and _distinct(self.train_tasks),
                     "a non-empty list of distinct task names")
        for name in ("map_examples", "map_length", "cnn_maps", "cnn_epochs", "k", "passes", "update_every",
                     "iterative_passes", "neuron_group_size"):
            self.require(name, getattr(self, name) > 0, "a positive integer")
        self.require("pool_examples", self.pool_examples is None or self.pool_examples > 0,
                     "a positive integer or null (all)")
        for name in ("cnn_lr", "lr", "conditional_lr"):
            self.require(name, getattr(self, name) > 0, "a positive number")
        for name in ("task_weight", "cnn_weight", "noise_start", "noise_end", "cnn_instances"):
            self.require(name, getattr(self, name) >= 0, "a number ≥ 0")
        self.require("iterative_step", 0 < self.iterative_step < 1, "a number in (0, 1)")
        self.require("seeds", bool(self.seeds) and _distinct(self.seeds), "a non-empty list of distinct integers")


S = typing.TypeVar("S", bound=Section)
SECTIONS: tuple[type[Section], ...] = (TopLevel, ModelSettings, DataSettings, TrainSettings, PruneSettings,
                                       RankingSettings, EvaluateSettings, PostPruneSettings, DeploySettings,
                                       Int8Settings, ExplainSettings, McapSettings)


class _Read(typing.Generic[S]):
    """A :class:`Params` attribute that reads and checks its section on first use, then keeps it."""

    def __init__(self, section: type[S]):
        self.section = section

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, params: Params, owner: type) -> S:
        value = params.__dict__[self.name] = self.section.read(params.raw)  # found first from now on
        return value


class Params:
    """params.yaml with each section a typed attribute (``params.train.epochs``), read and checked on first use."""

    top = _Read(TopLevel)  # seeds, tasks, strategies (also as params.seeds, ...)
    model = _Read(ModelSettings)
    data = _Read(DataSettings)
    train = _Read(TrainSettings)
    prune = _Read(PruneSettings)
    ranking = _Read(RankingSettings)
    evaluate = _Read(EvaluateSettings)
    post_prune = _Read(PostPruneSettings)
    deploy = _Read(DeploySettings)
    int8 = _Read(Int8Settings)
    explain = _Read(ExplainSettings)
    mcap = _Read(McapSettings)

    def __init__(self, raw: dict[str, Any]):
        self.raw = raw

    @classmethod
    def load(cls, path: Path = PARAMS_FILE) -> Params:
        return cls(load_params(path))

    @property
    def seeds(self) -> list[int]:
        return self.top.seeds

    @property
    def tasks(self) -> list[str]:
        return self.top.tasks

    @property
    def strategies(self) -> list[str]:
        return self.top.strategies

    def transfer_tasks(self) -> list[str]:
        """The tasks of ``tasks`` no controller trains on (the paper's transfer claim)."""
        return [task for task in self.tasks if task not in self.mcap_train_tasks()]

    def deploy_strategies(self) -> list[str]:
        """``deploy.strategies``, checked to be among the strategies that are pruned and fine-tuned."""
        unknown = sorted(set(self.deploy.strategies) - set(self.strategies))
        if unknown:
            raise McapError(f"params.yaml: 'deploy.strategies' must be among 'strategies' {self.strategies}, "
                            f"got {unknown}")
        return self.deploy.strategies

    def mcap_train_tasks(self) -> list[str]:
        """``mcap.train_tasks``, checked to be among ``tasks``."""
        unknown = sorted(set(self.mcap.train_tasks) - set(self.tasks))
        if unknown:
            raise McapError(f"params.yaml: 'mcap.train_tasks' must be a subset of 'tasks' {self.tasks}, "
                            f"got {self.mcap.train_tasks}")
        return self.mcap.train_tasks
