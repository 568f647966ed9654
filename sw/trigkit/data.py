"""From HDF5 event files to training batches: caching, splitting, targets, streaming.

Events are split into train/validation/test by blocks of ``BLOCK`` consecutive events assigned
by the card's split seed (simulated events are independent, so blocks are as good as single
events, and blocks let large files be streamed with contiguous reads).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .card import ModelCard
from .config import apply_overrides
from .detector import LABELS, SimConfig
from .errors import TrigkitError
from .io import open_events_h5

BLOCK = 256
SPLITS = ("train", "val", "test")
#: Files larger than this are streamed from disk instead of loaded into memory.
STREAM_ABOVE_BYTES = 2 << 30
DATA_CACHE = Path("build") / ".data"


def sim_config_for(card: ModelCard) -> SimConfig:
    """The simulation configuration a card's data uses (defaults + ``data.sim`` overrides)."""
    data = SimConfig().to_dict()
    for section, values in card.data.sim.items():
        if section not in data:
            raise TrigkitError(
                f"data.sim has unknown section {section!r}; allowed: {', '.join(data)}"
            )
        data = apply_overrides(data, [f"{section}.{k}={json.dumps(v)}" for k, v in values.items()])
    return SimConfig.from_dict(data)


def dataset_file(card: ModelCard, cache_dir: Path = DATA_CACHE, progress: bool = False) -> Path:
    """Path of the card's event file, simulating it (cached by configuration hash) if needed."""
    if card.data.source != "simulate":
        path = Path(card.data.source)
        if not path.is_file():
            raise TrigkitError(f"data.source {path} not found; give an HDF5 file or 'simulate'")
        return path
    from .simulate import write_h5

    cfg = sim_config_for(card)
    key = json.dumps({"sim": cfg.to_dict(), "sample": card.data.sample,
                      "events": card.data.events, "seed": card.data.seed,
                      "version": __version__}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = cache_dir / f"{card.data.sample}_{card.data.events}_{digest}.h5"
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_h5(path, cfg, card.data.sample, card.data.events, card.data.seed, progress=progress)
    return path


def split_indices(n_events: int, fractions: tuple[float, ...], seed: int) -> dict[str, np.ndarray]:
    """Sorted event indices of each split, assigned by blocks of ``BLOCK`` events."""
    n_blocks = -(-n_events // BLOCK)
    order = np.random.default_rng(seed).permutation(n_blocks)
    bounds = np.round(np.cumsum((0.0, *fractions)) * n_blocks).astype(int)
    out = {}
    for name, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
        blocks = np.sort(order[lo:hi])
        idx = (blocks[:, None] * BLOCK + np.arange(BLOCK)[None, :]).ravel()
        out[name] = idx[idx < n_events]
    return out


def _targets(card: ModelCard, f) -> tuple[np.ndarray, np.ndarray]:
    """(target array over all events, bool mask of usable events) for the card's task."""
    d = card.data
    if card.task == "classification":
        if "label" not in f:
            raise TrigkitError(f"{f.filename} has no 'label' dataset; classification needs labels")
        label = f["label"][()]
        names = {v: k for k, v in LABELS.items()}
        class_of = {LABELS[c]: i for i, c in enumerate(d.classes)}
        for src, dst in d.class_map.items():
            class_of[LABELS[src]] = d.classes.index(dst)
        target = np.array([class_of.get(int(lab), -1) for lab in range(max(LABELS.values()) + 1)])
        unknown = sorted(set(np.unique(label).tolist()) - set(names))
        if unknown:
            raise TrigkitError(f"{f.filename} has labels {unknown} that are not event types")
        y = target[label]
        return y.astype(np.int64), y >= 0
    if d.target not in f:
        raise TrigkitError(
            f"{f.filename} has no {d.target!r} dataset for regression; available: "
            + ", ".join(k for k in f if k != "hits")
        )
    y = f[d.target][()].astype(np.float32)
    if y.ndim != 1:
        raise TrigkitError(f"regression target {d.target!r} must be one value per event")
    ok = np.isfinite(y)
    if not ok.any():
        raise TrigkitError(f"regression target {d.target!r} is NaN for every event in {f.filename}")
    return y, ok


@dataclass
class Split:
    """One split of a data set: event indices into the file and their targets."""

    name: str
    path: Path
    index: np.ndarray
    target: np.ndarray
    hits: np.ndarray | None  # in memory, or None when streaming

    def __len__(self) -> int:
        return len(self.index)

    def truth(self, key: str) -> np.ndarray:
        """A truth dataset for this split's events (e.g. ``pt`` for turn-on curves)."""
        import h5py

        with h5py.File(self.path, "r") as f:
            if key not in f:
                raise TrigkitError(f"{self.path} has no truth dataset {key!r}")
            return f[key][()][self.index]

    def images(self) -> np.ndarray:
        """All of this split's images in memory (N, *input_shape) uint8."""
        if self.hits is not None:
            return self.hits
        import h5py

        with h5py.File(self.path, "r") as f:
            return f["hits"][self.index]

    def batches(self, batch_size: int, shuffle_seed: int | None = None) -> Iterator[tuple]:
        """Yield (images uint8, targets) batches; shuffled by blocks when a seed is given."""
        order = np.arange(len(self.index))
        if shuffle_seed is not None:
            rng = np.random.default_rng(shuffle_seed)
            if self.hits is not None:
                order = rng.permutation(len(order))
            else:  # streaming: shuffle whole blocks so that reads stay contiguous
                n_blocks = -(-len(order) // BLOCK)
                blocks = rng.permutation(n_blocks)
                order = np.concatenate([np.arange(b * BLOCK, min((b + 1) * BLOCK, len(order)))
                                        for b in blocks])
        if self.hits is not None:
            for s in range(0, len(order), batch_size):
                sel = order[s:s + batch_size]
                yield self.hits[sel], self.target[sel]
            return
        import h5py

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
    path = path or dataset_file(card, progress=progress)
    with open_events_h5(path) as f:
        shape = tuple(f["hits"].shape[1:])
        if shape != tuple(card.data.input_shape):
            raise TrigkitError(
                f"model card {card.name} expects input_shape {list(card.data.input_shape)} but "
                f"{path} holds images of shape {list(shape)}; fix data.input_shape or the data"
            )
        n = f["hits"].shape[0]
        target, usable = _targets(card, f)
        if streaming is None:
            streaming = f["hits"].size * f["hits"].dtype.itemsize > STREAM_ABOVE_BYTES
        hits = None if streaming else f["hits"][()]
    parts = split_indices(n, card.data.split, card.data.split_seed)
    splits = {}
    for name, idx in parts.items():
        idx = idx[usable[idx]]
        if len(idx) == 0:
            raise TrigkitError(f"the {name} split of {path} has no usable events for {card.name}")
        splits[name] = Split(name, Path(path), idx, target[idx],
                             None if hits is None else hits[idx])
    return splits
