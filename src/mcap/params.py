"""Reading ``params.yaml`` with errors that name the key and what it accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mcap.errors import McapError

PARAMS_FILE = Path("params.yaml")
_MISSING = object()


class _ParamsLoader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where ``5e-05`` (no dot) is a string; DVC writes YAML 1.2, and that is how it
    stores every ``-S`` float below 1e-4 (``-S 'train.learning_rates=[5e-5]'``). Read such floats as floats."""


_ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    if not path.is_file():
        raise McapError(f"{path}: not found; run stages from the repository root")
    try:
        params = yaml.load(path.read_text(), Loader=_ParamsLoader)
    except yaml.YAMLError as error:
        raise McapError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(params, dict):
        raise McapError(f"{path}: expected a mapping of sections at the top level")
    return params


def get(params: dict[str, Any], key: str, kind: type | tuple[type, ...] | None = None, default: Any = _MISSING) -> Any:
    """Look up a dotted key (``prune.ratio``); check its type when ``kind`` is given."""
    value: Any = params
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            if default is not _MISSING:
                return default
            raise McapError(f"params.yaml: missing key '{key}'")
        value = value[part]
    if kind is not None and not (isinstance(value, kind) and not (isinstance(value, bool) and bool not in _tuple(kind))):
        names = " or ".join(t.__name__ for t in _tuple(kind))
        raise McapError(f"params.yaml: '{key}' must be {names}, got {value!r}")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def check_ratio(ratio: Any, key: str = "prune.ratio") -> float:
    """A fraction of heads or weights to remove: a number in [0, 1)."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise McapError(f"params.yaml: '{key}' must be a number in [0, 1), got {ratio!r}")
    return float(ratio)


def optional_count(params: dict[str, Any], key: str) -> int | None:
    """A positive integer or null (meaning "all")."""
    value = get(params, key, (int, type(None)))
    if value is not None and value <= 0:
        raise McapError(f"params.yaml: '{key}' must be a positive integer or null (all), got {value!r}")
    return value


def positive_numbers(params: dict[str, Any], key: str) -> list[float]:
    """A non-empty list of positive numbers (e.g. a learning-rate grid)."""
    values = get(params, key, list)
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
        raise McapError(f"params.yaml: '{key}' must be a non-empty list of positive numbers, got {values!r}")
    return [float(v) for v in values]


def all_strategies(params: dict[str, Any]) -> list[str]:
    """``prune.strategies`` followed by ``mcap.strategies`` (the learned ones, pruned in stages of their own)."""
    return get(params, "prune.strategies", list) + get(params, "mcap.strategies", list)


def all_tasks(params: dict[str, Any]) -> list[str]:
    """``tasks`` followed by ``transfer.tasks`` (the tasks that get data, maps and δ), without repeats."""
    return list(dict.fromkeys(get(params, "tasks", list) + get(params, "transfer.tasks", list, [])))
