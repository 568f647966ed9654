"""From event files to training batches: the card's data file, splitting, targets, streaming.

Where the events come from is not known here: the card names a data source (a generator) or a
file, and an input format; the domains register what those names mean in
:mod:`trigkit.core.registry` (``trigkit.l0.data``: simulated hit images; ``trigkit.offline.data``:
jet images, tables, pseudo-experiment histograms). This module holds what every format shares:
the :class:`Split` container (in memory, or hit images streamed from HDF5 by blocks), the
split assignment, class targets, integer input codes, and the dispatch.

Events are split into train/validation/test by blocks of ``BLOCK`` consecutive events assigned
by the card's split seed (simulated events are independent, so blocks are as good as single
events, and blocks let large files be streamed with contiguous reads); in-memory formats split
row by row (:func:`split_arrays`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trigkit.core import registry
from trigkit.core.card import ModelCard
from trigkit.core.errors import TrigkitError
from trigkit.core.paths import DATA_CACHE

BLOCK = 256
SPLITS = ("train", "val", "test")
#: Files larger than this are streamed from disk instead of loaded into memory.
STREAM_ABOVE_BYTES = 2 << 30


def dataset_file(card: ModelCard, cache_dir: Path = DATA_CACHE, progress: bool = False) -> Path:
    """Path of the card's event file: a registered generator's (cached by configuration hash),
    or the data file it names (brought into its format's layout once, when needed)."""
    generator = registry.source(card.data.source)
    if generator is not None:
        return generator.make_file(card, cache_dir, progress)
    path = Path(card.data.source)
    if not path.is_file():
        raise TrigkitError(
            f"data.source {path} not found; give a data file or one of the generators: "
            + ", ".join(registry.source_names()))
    prepare = registry.input_format(card.data.input_format).prepare_file
    return prepare(path, cache_dir) if prepare is not None else path


def split_indices(n_events: int, fractions: tuple[float, ...], seed: int,
                  block: int = BLOCK) -> dict[str, np.ndarray]:
    """Sorted event indices of each split, assigned by blocks of ``block`` events.

    Blocks keep HDF5 reads contiguous when hit images are streamed; in-memory formats use
    ``block=1`` (row by row), as their files are often concatenations of one process after
    another, which blocks would share out unevenly among the splits.
    """
    n_blocks = -(-n_events // block)
    order = np.random.default_rng(seed).permutation(n_blocks)
    bounds = np.round(np.cumsum((0.0, *fractions)) * n_blocks).astype(int)
    out = {}
    for name, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
        blocks = np.sort(order[lo:hi])
        idx = (blocks[:, None] * block + np.arange(block)[None, :]).ravel()
        out[name] = idx[idx < n_events]
    return out


def class_targets(card: ModelCard, label: np.ndarray, label_names: dict[str, int],
                  where: str) -> np.ndarray:
    """Class index (in ``data.classes`` order) of every event, -1 for events of other types.

    ``label_names`` maps the data's label names to their integer codes (``detector.LABELS`` for
    hit images, the file's ``label_names`` otherwise); ``data.class_map`` merges types.
    """
    d = card.data
    for name in (*d.classes, *d.class_map, *d.class_map.values()):
        if name not in label_names:
            raise TrigkitError(f"data class {name!r} of {card.name} is not a label of {where}; "
                               f"its labels are: {', '.join(label_names)}")
    label = np.asarray(label).astype(np.int64)
    unknown = sorted(set(np.unique(label).tolist()) - set(label_names.values()))
    if unknown:
        raise TrigkitError(f"{where} has label value(s) {unknown} that are not among the "
                           "classes (" + ", ".join(f"{v}={k}" for k, v in label_names.items())
                           + "); name every class (--classes) or fix the labels")
    class_of = {label_names[c]: i for i, c in enumerate(d.classes)}
    for src, dst in d.class_map.items():
        class_of[label_names[src]] = d.classes.index(dst)
    lut = np.full(max(label_names.values()) + 1, -1, np.int64)
    for code, idx in class_of.items():
        lut[code] = idx
    return lut[label]


@dataclass
class Split:
    """One split of a data set: event indices into the file, their targets and inputs.

    ``hits`` holds the network inputs in memory (hit images, jet images, feature rows or
    histograms), or None when hit images are streamed from the file. ``extra`` holds truth
    arrays kept in memory (offline formats); ``context`` what an evaluation needs beyond the
    events (e.g. the event pools of pseudo-experiment histograms).
    """

    name: str
    path: Path
    index: np.ndarray
    target: np.ndarray
    hits: np.ndarray | None  # in memory, or None when streaming
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.index)

    def truth(self, key: str) -> np.ndarray:
        """A truth dataset for this split's events (e.g. ``pt`` for turn-on curves)."""
        if key in self.extra:
            return self.extra[key]
        if self.path.suffix.lower() not in (".h5", ".hdf5"):
            raise TrigkitError(f"{self.name} split has no truth array {key!r}; add it to "
                               "data.keep")
        with h5py.File(self.path, "r") as f:
            if key not in f:
                raise TrigkitError(f"{self.path} has no truth dataset {key!r}")
            return f[key][()][self.index]

    def images(self) -> np.ndarray:
        """All of this split's images in memory (N, *input_shape) uint8."""
        if self.hits is not None:
            return self.hits
        with h5py.File(self.path, "r") as f:
            return f["hits"][self.index]

    def subset(self, mask: np.ndarray) -> Split:
        """The events where ``mask`` is true (in memory)."""
        x = self.images()
        return Split(self.name, self.path, self.index[mask], self.target[mask], x[mask],
                     {k: v[mask] for k, v in self.extra.items()}, self.context)

    def _order(self, shuffle_seed: int | None) -> np.ndarray:
        order = np.arange(len(self.index))
        if shuffle_seed is None:
            return order
        rng = np.random.default_rng(shuffle_seed)
        if self.hits is not None:
            return rng.permutation(len(order))
        # streaming: shuffle whole blocks so that reads stay contiguous
        n_blocks = -(-len(order) // BLOCK)
        blocks = rng.permutation(n_blocks)
        return np.concatenate([np.arange(b * BLOCK, min((b + 1) * BLOCK, len(order)))
                               for b in blocks])

    def batches(self, batch_size: int, shuffle_seed: int | None = None,
                keys: tuple[str, ...] = ()) -> Iterator[tuple]:
        """Yield (inputs, targets) batches; shuffled by blocks when a seed is given.

        With ``keys``, yield (inputs, targets, {key: truth}) (in-memory splits only).
        """
        order = self._order(shuffle_seed)
        if self.hits is not None:
            extra = {k: self.truth(k) for k in keys}
            for s in range(0, len(order), batch_size):
                sel = order[s:s + batch_size]
                if keys:
                    yield self.hits[sel], self.target[sel], {k: v[sel] for k, v in extra.items()}
                else:
                    yield self.hits[sel], self.target[sel]
            return
        if keys:
            raise TrigkitError("truth arrays per batch need the data in memory")
        with h5py.File(self.path, "r") as f:
            hits = f["hits"]
            for s in range(0, len(order), batch_size):
                sel = np.sort(order[s:s + batch_size])
                yield hits[self.index[sel]], self.target[sel]


def load_splits(
    card: ModelCard, path: Path | None = None, streaming: bool | None = None,
    progress: bool = False,
) -> dict[str, Split]:
    """Load (or stream) the card's data and split it; checks shapes and targets first."""
    path = Path(path or dataset_file(card, progress=progress))
    splits = registry.input_format(card.data.input_format).load(card, path, streaming)
    if card.data.train_on:
        wanted = [card.data.classes.index(c) for c in card.data.train_on
                  if c in card.data.classes]
        if len(wanted) != len(card.data.train_on):
            raise TrigkitError(f"data.train_on {list(card.data.train_on)} must name classes of "
                               f"data.classes {list(card.data.classes)}")
        for name in ("train", "val"):
            splits[name] = splits[name].subset(np.isin(splits[name].target, wanted))
    if card.data.train_events:  # a random subset: the split assignment is random
        train = splits["train"]
        splits["train"] = train.subset(np.arange(len(train)) < card.data.train_events)
    for name, sp in splits.items():
        if len(sp) == 0:
            raise TrigkitError(f"the {name} split of {path} has no usable events for {card.name}")
    return splits


def check_shape(card: ModelCard, shape: tuple[int, ...], path: Path) -> None:
    """Refuse data whose per-event shape differs from the card's ``data.input_shape``."""
    if tuple(shape) != tuple(card.data.input_shape):
        raise TrigkitError(
            f"model card {card.name} expects input_shape {list(card.data.input_shape)} but "
            f"{path} gives inputs of shape {list(shape)}; fix data.input_shape or the data"
        )


def input_codes(card: ModelCard, x: np.ndarray) -> np.ndarray:
    """Inputs as ``data.input_bits``-bit codes (see DataSpec), or unchanged float32."""
    d = card.data
    if d.input_bits < 1:
        return x.astype(np.float32)
    lo, hi = card.input_range
    codes = np.clip(np.round(x.astype(np.float64) / d.input_lsb), lo, hi)
    return codes.astype(code_dtype(d.input_bits, card.input_signed))


def code_dtype(bits: int, signed: bool) -> type:
    """The narrowest numpy integer type holding ``bits``-bit codes."""
    if signed:
        return np.int8 if bits <= 8 else np.int16
    return np.uint8 if bits <= 8 else np.uint16


def split_arrays(card: ModelCard, path: Path, x: np.ndarray, target: np.ndarray,
                 usable: np.ndarray, extra: dict[str, np.ndarray]) -> dict[str, Split]:
    """In-memory arrays split row by row (the usable rows of each split)."""
    parts = split_indices(len(x), card.data.split, card.data.split_seed, block=1)
    out = {}
    for name, idx in parts.items():
        idx = idx[usable[idx]]
        out[name] = Split(name, path, idx, target[idx], x[idx],
                          {k: v[idx] for k, v in extra.items()})
    return out


def labels_or_target(card: ModelCard, label: np.ndarray, names: list[str],
                     extra: dict[str, np.ndarray], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(class index or regression target of every row, usable rows) from a file's labels
    (``names``: its label names; without names, integer label k is the k-th of
    ``data.classes``) or its truth columns."""
    if card.task == "regression":
        if card.data.target not in extra:
            raise TrigkitError(f"{path} has no {card.data.target!r} column for regression; "
                               f"available: {', '.join(extra)}")
        y = extra[card.data.target].astype(np.float32)
        return y, np.isfinite(y)
    codes = {n: i for i, n in enumerate(names)} or {
        c: i for i, c in enumerate(card.data.classes)}
    y = class_targets(card, label, codes, str(path))
    return y, y >= 0


def augmenter(card: ModelCard) -> Callable[[np.ndarray, np.random.Generator], np.ndarray] | None:
    """The card's training-time augmentations (``data.augment``, applied in order), or None."""
    fns = []
    for name in card.data.augment:
        fmt, fn = registry.augmentation(name)
        if card.data.input_format != fmt:
            raise TrigkitError(f"data.augment {name} needs {fmt} inputs")
        fns.append(fn)
    if not fns:
        return None
    if len(fns) == 1:
        return fns[0]

    def chained(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for fn in fns:
            x = fn(x, rng)
        return x

    return chained
