"""The L0 domain's data for the training core: the ``simulate`` source (RPC hit images from
:mod:`trigkit.l0.simulate`, cached by configuration hash) and the ``hits`` input format
(HDF5 files with ``hits`` (N, 9, 384), ``label`` and truth arrays; streamed by blocks when
large), registered in :mod:`trigkit.core.registry`. Firmware test vectors of hit-image models
are freshly simulated events plus hand-made edge cases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from trigkit import __version__
from trigkit.core import registry
from trigkit.core.cache import cached_file
from trigkit.core.card import DataSpec, ModelCard
from trigkit.core.config import apply_overrides
from trigkit.core.errors import ConfigError, TrigkitError
from trigkit.core.io import open_events_h5, reading
from trigkit.learn.data import STREAM_ABOVE_BYTES, Split, class_targets, split_indices

from .detector import LABELS, SimConfig
from .events import SCAN_EVENTS, as_hdf5, check_hit_file, read_hits
from .simulate import simulate, write_h5


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


def simulated_file(card: ModelCard, cache_dir: Path, progress: bool = False) -> Path:
    """The card's simulated event file (``data.sample``, ``events``, ``seed``, ``sim``),
    generated once and cached by the hash of its configuration."""
    cfg = sim_config_for(card)
    d = card.data
    key = {"sim": cfg.to_dict(), "sample": d.sample, "events": d.events, "seed": d.seed,
           "version": __version__}
    return cached_file(cache_dir, f"{d.sample}_{d.events}", key,
                       lambda path: write_h5(path, cfg, d.sample, d.events, d.seed,
                                             progress=progress))


def _hit_targets(card: ModelCard, f) -> tuple[np.ndarray, np.ndarray]:
    """(target array over all events, bool mask of usable events) for the card's task."""
    d = card.data
    if card.task != "regression":
        if "label" not in f:
            raise TrigkitError(f"{f.filename} has no 'label' dataset; classification needs labels")
        y = class_targets(card, f["label"][()], LABELS, str(f.filename))
        return y, y >= 0
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


def load_hits(card: ModelCard, path: Path, streaming: bool | None) -> dict[str, Split]:
    """Hit images (in memory, or streamed when large) split by blocks, with their targets."""
    info = check_hit_file(path, shape=card.data.input_shape)  # also the model's image shape
    with open_events_h5(path) as f, reading(path):
        target, usable = _hit_targets(card, f)
        if streaming is None:
            streaming = f["hits"].size * f["hits"].dtype.itemsize > STREAM_ABOVE_BYTES
        hits = None if streaming else read_hits(path, f)
    n = info.n_events
    parts = split_indices(n, card.data.split, card.data.split_seed)
    splits = {}
    for name, idx in parts.items():
        idx = idx[usable[idx]]
        splits[name] = Split(name, Path(path), idx, target[idx],
                             None if hits is None else hits[idx])
    return splits


def hit_inputs(card: ModelCard, path: Path) -> Iterator[np.ndarray]:
    """A hit file's images (HDF5 or ROOT), checked whole first, then read in chunks."""
    path = as_hdf5(path)
    info = check_hit_file(path, shape=card.data.input_shape)
    with open_events_h5(path) as f:
        for first in range(0, info.n_events, SCAN_EVENTS):
            yield read_hits(path, f, slice(first, first + SCAN_EVENTS))


def check_hit_classes(data: DataSpec) -> None:
    """Classes of a hit-image card must be simulated event types."""
    for name in (*data.classes, *data.class_map, *data.class_map.values()):
        if name not in LABELS:
            raise ConfigError(
                f"data class {name!r} is not an event type; allowed: {', '.join(LABELS)}"
            )


def edge_case_images(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Hand-made images: empty, all strips on, single hits at the borders, maximum occupancy
    patterns and dense random images."""
    rows, cols = shape
    imgs = [np.zeros(shape, np.uint8), np.ones(shape, np.uint8)]
    for r in range(rows):
        for c in (0, cols - 1):
            img = np.zeros(shape, np.uint8)
            img[r, c] = 1
            imgs.append(img)
    checker = (np.add.outer(np.arange(rows), np.arange(cols)) % 2).astype(np.uint8)
    imgs += [checker, 1 - checker]
    stripes = np.zeros(shape, np.uint8)
    stripes[:, ::2] = 1
    imgs += [stripes, 1 - stripes]
    for c in (0, cols // 2, cols - 1):  # a straight track in every row at one column
        img = np.zeros(shape, np.uint8)
        img[:, c] = 1
        imgs.append(img)
    rng = np.random.default_rng(seed)
    for p in (0.05, 0.2, 0.5, 0.8):
        imgs.append((rng.random(shape) < p).astype(np.uint8))
    return np.stack(imgs)


def hit_test_vectors(card: ModelCard, n_events: int, seed: int) -> np.ndarray:
    """Firmware test vectors: freshly simulated events of the card's sample (not the training
    data) and the edge cases."""
    sim = simulate(sim_config_for(card), card.data.sample, n_events, seed)["hits"]
    return np.concatenate([sim, edge_case_images(tuple(card.data.input_shape), seed)])


registry.register_source(registry.DataSource("simulate", "hits", simulated_file))
registry.register_format(registry.InputFormat(
    "hits", load_hits, prepare_file=as_hdf5, read_inputs=hit_inputs,
    check_data=check_hit_classes, test_vectors=hit_test_vectors, binary=True))
