"""Named data sources, input formats, augmentations and evaluators offered by the domains.

The training core (:mod:`trigkit.learn`) and the firmware (:mod:`trigkit.firmware`) never
import a domain package (:mod:`trigkit.l0`, :mod:`trigkit.offline`). A model card names its
data source (``data.source: simulate``, ``jets``, ... or a file) and input format (``hits``,
``jet_images``, ``table``, ``histograms``); the domains register what those names mean here:

- :class:`DataSource`: a generator that writes the card's event file (cached by its settings);
- :class:`InputFormat`: how a file of that format becomes train/validation/test splits, how
  files from elsewhere are brought into it, which card settings it accepts, and which test
  vectors the firmware checks run on;
- augmentations (``data.augment``) and evaluators (per task and input format).

The built-in domains are loaded on the first look-up (:data:`BUILTIN_PLUGINS`); other packages
add theirs through the ``trigkit.plugins`` entry-point group (a module that registers on import).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .errors import TrigkitError

#: Modules of the built-in domains; importing one registers what it offers.
BUILTIN_PLUGINS = ("trigkit.l0.data", "trigkit.offline.data")
#: Entry-point group of outside plugins.
ENTRY_POINT_GROUP = "trigkit.plugins"
#: Input format of a data file whose suffix no format claims.
DEFAULT_FILE_FORMAT = "hits"


@dataclass(frozen=True)
class DataSource:
    """A built-in generator (``data.source: NAME``).

    ``make_file(card, cache_dir, progress)`` returns the path of the card's event file,
    generating it (cached by configuration hash) when needed.
    """

    name: str
    input_format: str
    make_file: Callable[[Any, Path, bool], Path]


@dataclass(frozen=True)
class InputFormat:
    """An input format (``data.format``).

    ``load(card, path, streaming)`` -> ``{"train", "val", "test"}`` splits
    (:class:`trigkit.learn.data.Split`); ``prepare_file(path, cache_dir)`` brings a file from
    elsewhere into the layout ``load`` reads (None: read as it is); ``check_data(data_spec)``
    refuses card settings the format cannot serve (ConfigError); ``test_vectors(card, n,
    seed)`` gives the firmware checks' input vectors (None: the test split's first ``n``
    events plus generic edge cases); ``file_suffixes`` claim data files for this format under
    ``format: auto``. ``binary``: inputs are single bits (0/1) and need no ``input_bits``;
    ``signed_codes``: integer input codes are two's complement (centred features).
    ``read_inputs(card, path)`` yields a new file's inputs in chunks, prepared exactly as the
    training inputs (``trigkit predict``); None: the format cannot be predicted on.
    """

    name: str
    load: Callable[[Any, Path, bool | None], dict[str, Any]]
    prepare_file: Callable[[Path, Path], Path] | None = None
    check_data: Callable[[Any], None] | None = None
    test_vectors: Callable[[Any, int, int], Any] | None = None
    file_suffixes: tuple[str, ...] = ()
    binary: bool = False
    signed_codes: bool = False
    read_inputs: Callable[[Any, Path], Any] | None = None


_SOURCES: dict[str, DataSource] = {}
_FORMATS: dict[str, InputFormat] = {}
_AUGMENTATIONS: dict[str, tuple[str, Callable]] = {}
_EVALUATORS: dict[tuple[str, str], Callable] = {}
_loaded = False


def register_source(source: DataSource) -> DataSource:
    _SOURCES[source.name] = source
    return source


def register_format(fmt: InputFormat) -> InputFormat:
    _FORMATS[fmt.name] = fmt
    return fmt


def register_augmentation(name: str, input_format: str, fn: Callable) -> Callable:
    """``fn(inputs, rng) -> inputs`` applied to training batches of ``input_format``."""
    _AUGMENTATIONS[name] = (input_format, fn)
    return fn


def register_evaluator(task: str, input_format: str = "*") -> Callable[[Callable], Callable]:
    """Decorator: ``fn(card, model, splits, plots_dir, progress) -> {"metrics", "baseline"}``
    evaluates models of ``task`` on ``input_format`` (``*``: any format without its own)."""

    def wrap(fn: Callable) -> Callable:
        _EVALUATORS[(task, input_format)] = fn
        return fn

    return wrap


def load_plugins() -> None:
    """Import the built-in domains and outside plugins once (they register on import)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in BUILTIN_PLUGINS:
        importlib.import_module(name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()


def source_names() -> tuple[str, ...]:
    load_plugins()
    return tuple(_SOURCES)


def source(name: str) -> DataSource | None:
    """The generator ``name``, or None when ``name`` is not a registered source (a file)."""
    load_plugins()
    return _SOURCES.get(name)


def input_format(name: str) -> InputFormat:
    load_plugins()
    if name not in _FORMATS:
        raise TrigkitError(f"input format {name!r} unknown; known: {', '.join(_FORMATS)}")
    return _FORMATS[name]


def format_of_file(path: str | Path) -> str:
    """The input format a data file is read as under ``format: auto`` (by its suffix)."""
    load_plugins()
    suffix = Path(path).suffix.lower()
    for fmt in _FORMATS.values():
        if suffix in fmt.file_suffixes:
            return fmt.name
    return DEFAULT_FILE_FORMAT


def augmentation_names() -> tuple[str, ...]:
    load_plugins()
    return tuple(_AUGMENTATIONS)


def augmentation(name: str) -> tuple[str, Callable]:
    """(input format it applies to, function) of augmentation ``name``."""
    load_plugins()
    if name not in _AUGMENTATIONS:
        raise TrigkitError(f"data.augment {name!r} unknown; allowed: "
                           + ", ".join(_AUGMENTATIONS))
    return _AUGMENTATIONS[name]


def evaluator(task: str, fmt: str) -> Callable:
    """The evaluator of ``task`` models on ``fmt`` inputs (format-specific first)."""
    load_plugins()
    fn = _EVALUATORS.get((task, fmt)) or _EVALUATORS.get((task, "*"))
    if fn is None:
        raise TrigkitError(f"no evaluation is registered for task {task} on {fmt} inputs")
    return fn
