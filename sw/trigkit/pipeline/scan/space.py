"""The search space of a co-design scan, read from SPACE.yaml and checked before any trial.

SPACE.yaml::

    budget:                      # fixed card overrides of every trial (its training budget)
      training.epochs: 3
      data.events: 20000
    params:                      # card keys and what the scan may choose for them
      architecture.channels: {choices: [[4, 4], [6, 4], [8, 4]]}
      quant.act_bits: {low: 2, high: 4}            # integers, both ends included
      training.lr: {low: 0.001, high: 0.01, log: true}

A key is ``section.key`` of the model card. ``choices`` may hold lists (kernel shapes, layer
widths); ``low``/``high`` give an integer range when both are integers, a float range otherwise.
Every key must exist in the card, every range must hold at least two values, and the card must
stay valid at every choice and at both ends of every range: all of it is checked here, naming the
key, before a trial starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trigkit.core.card import ModelCard
from trigkit.core.config import load_yaml
from trigkit.core.errors import ConfigError, TrigkitError

#: Top-level keys of SPACE.yaml.
SPACE_KEYS = ("budget", "params")
#: Keys of one parameter.
PARAM_KEYS = ("choices", "low", "high", "log")


@dataclass(frozen=True)
class Param:
    """One scanned card key: a list of ``choices`` or a ``low``..``high`` range."""

    key: str
    choices: tuple[Any, ...] = ()
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def extremes(self) -> list[Any]:
        """The values that must all give a valid card."""
        return list(self.choices) if self.choices else [self.low, self.high]

    def encode(self, value: Any) -> Any:
        """The value as the search library sees it (lists become JSON strings: Optuna's
        categorical choices are scalars)."""
        return json.dumps(value) if isinstance(value, list | tuple) else value

    def decode(self, value: Any) -> Any:
        if self.choices and any(isinstance(c, list | tuple) for c in self.choices):
            return json.loads(value)
        return value


@dataclass(frozen=True)
class SearchSpace:
    """What a scan varies (``params``) and what it fixes for every trial (``budget``)."""

    params: tuple[Param, ...]
    budget: dict[str, Any]

    def overrides(self, config: dict[str, Any]) -> dict[str, Any]:
        """Card overrides of one trial from its (encoded) parameter values."""
        return {**self.budget, **{p.key: p.decode(config[p.key]) for p in self.params}}

    def card_values(self, card: ModelCard) -> dict[str, Any] | None:
        """The encoded parameter values of ``card`` itself, if they lie in the space."""
        data = card.to_dict()
        out = {}
        for p in self.params:
            value = card_value(data, p.key)
            value = list(value) if isinstance(value, tuple) else value
            inside = (value in [list(c) if isinstance(c, tuple) else c for c in p.choices]
                      if p.choices else p.low <= value <= p.high)
            if not inside:
                return None
            out[p.key] = p.encode(value)
        return out


def card_value(data: dict[str, Any], key: str) -> Any:
    """The value of ``section.key`` in a card dict; a missing key is a ConfigError."""
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{key}: not a key of the model card (a key is section.name, "
                              "e.g. architecture.channels or training.lr)")
        node = node[part]
    return node


def _param(key: str, spec: Any) -> Param:
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"params.{key}: give {{choices: [...]}} or {{low: L, high: H}}")
    unknown = sorted(set(spec) - set(PARAM_KEYS))
    if unknown:
        raise ConfigError(f"params.{key}: unknown {', '.join(unknown)}; allowed: "
                          + ", ".join(PARAM_KEYS))
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or len(choices) < 1 or (
                len({json.dumps(c) for c in choices}) < len(choices)):
            raise ConfigError(f"params.{key}: choices must be a non-empty list without repeats")
        if "low" in spec or "high" in spec:
            raise ConfigError(f"params.{key}: give choices or low/high, not both")
        return Param(key, choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise ConfigError(f"params.{key}: low and high must both be numbers")
    if not low < high:
        raise ConfigError(f"params.{key}: empty range (low {low} must be below high {high})")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"params.{key}: a log range needs low > 0")
    return Param(key, low=low, high=high, log=log)


def read_space(path: str | Path, card: ModelCard) -> SearchSpace:
    """Read and check SPACE.yaml against ``card`` (see the module docstring)."""
    data = load_yaml(path)
    unknown = sorted(set(data) - set(SPACE_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; allowed: "
                          + ", ".join(SPACE_KEYS))
    params_spec = data.get("params") or {}
    if not isinstance(params_spec, dict) or not params_spec:
        raise ConfigError(f"{path}: params must name at least one card key to scan")
    budget = data.get("budget") or {}
    if not isinstance(budget, dict):
        raise ConfigError(f"{path}: budget must be a mapping of card keys to values")
    card_dict = card.to_dict()
    try:
        params = tuple(_param(str(k), v) for k, v in params_spec.items())
        for key in [*budget, *(p.key for p in params)]:
            if key.split(".")[0] in ("name",):
                raise ConfigError(f"{key}: the card's name is not scanned")
            card_value(card_dict, key)
        overlap = sorted(set(budget) & {p.key for p in params})
        if overlap:
            raise ConfigError(f"{', '.join(overlap)}: both in budget and params")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    space = SearchSpace(params, dict(budget))
    for p in params:
        for value in p.extremes():
            try:
                card.with_overrides(card.name, {**space.budget, p.key: value})
            except (ConfigError, TrigkitError) as err:
                raise ConfigError(f"{path}: {p.key} = {json.dumps(value)} gives an invalid "
                                  f"card: {err}") from None
    return space


def tune_space(space: SearchSpace) -> dict[str, Any]:
    """The space as Ray Tune domains (converted to Optuna distributions by OptunaSearch)."""
    from ray import tune

    out: dict[str, Any] = {}
    for p in space.params:
        if p.choices:
            out[p.key] = tune.choice([p.encode(c) for c in p.choices])
        elif p.is_int:
            out[p.key] = (tune.lograndint if p.log else tune.randint)(p.low, p.high + 1)
        else:
            out[p.key] = (tune.loguniform if p.log else tune.uniform)(p.low, p.high)
    return out
