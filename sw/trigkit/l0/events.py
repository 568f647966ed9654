"""Event files of hit images, checked before any work: readable HDF5, the datasets a command
needs, hit images of the detector's shape and dtype holding only 0 and 1 (every chunk is read
once), labels of known event types, one readable entry per event in every per-event dataset.
Reads of the hit images go through :func:`read_hits`, which refuses values other than 0 and 1
and turns a damaged chunk into a one-line error."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import yaml

from trigkit.core import rootio
from trigkit.core.cache import cached_file
from trigkit.core.errors import ConfigError, TrigkitError, one_line
from trigkit.core.io import atomic_path, open_events_h5, reading
from trigkit.core.paths import DATA_CACHE

from .detector import LABELS, SimConfig

HIT_DTYPES = (np.dtype(np.uint8), np.dtype(np.bool_))
#: Events per read when a file's hit images are scanned.
SCAN_EVENTS = 8192


@dataclass(frozen=True)
class HitFile:
    """What :func:`check_hit_file` found: events, image shape and the file's configuration."""

    path: Path
    n_events: int
    shape: tuple[int, int]
    config: SimConfig


def file_config(path: str | os.PathLike, f: h5py.File) -> SimConfig:
    """The simulation configuration stored in the file (defaults for files without one)."""
    if "config" not in f.attrs:
        return SimConfig()
    try:
        data = yaml.safe_load(f.attrs["config"])
        return SimConfig.from_dict(data if isinstance(data, dict) else {})
    except (yaml.YAMLError, ConfigError, TypeError, ValueError, AttributeError) as err:
        raise TrigkitError(f"{path}: its config attribute is damaged ({one_line(err)})"
                           ) from None


def check_hit_file(path: str | os.PathLike, need: tuple[str, ...] = ("hits",),
                   shape: tuple[int, ...] | None = None) -> HitFile:
    """Check an event file before any work (see the module docstring). Without ``shape`` the
    images must fit the detector of the file's configuration (the default detector when the
    file has none), as displays and the coincidence trigger need; with ``shape`` (the image
    shape a model expects) a file without a configuration may have any geometry of that
    shape."""
    with open_events_h5(path, need=need) as f, reading(path):
        cfg = file_config(path, f)
        hits = f["hits"]
        det = cfg.detector
        want = ((det.n_layers, det.n_eta_bins) if shape is None or "config" in f.attrs
                or hits.ndim != 3 else tuple(hits.shape[1:]))
        if hits.ndim != 3 or hits.shape[1:] != want:
            raise TrigkitError(f"{path} holds hit images of shape {list(hits.shape[1:])}; its "
                               f"detector has {want[0]} layers x {want[1]} eta bins "
                               f"(expected (N, {want[0]}, {want[1]}))")
        if shape is not None and tuple(hits.shape[1:]) != tuple(shape):
            raise TrigkitError(f"the model expects input_shape {list(shape)} but {path} holds "
                               f"images of shape {list(hits.shape[1:])}; fix data.input_shape "
                               "or the data")
        if hits.dtype not in HIT_DTYPES:
            raise TrigkitError(f"{path}: hits are {hits.dtype}, expected uint8 or bool (0/1)")
        n = hits.shape[0]
        for key in f:
            d = f[key]
            if not isinstance(d, h5py.Dataset):
                continue
            if d.ndim >= 1 and d.shape[0] != n:
                raise TrigkitError(f"{path}: dataset {key!r} has {d.shape[0]} entries for "
                                   f"{n} events")
            if key != "hits":
                d[()]  # every dataset must be readable
        if "label" in f:
            _check_labels(path, f["label"])
        for first in range(0, n, SCAN_EVENTS):  # every chunk decompresses to 0/1 values
            read_hits(path, f, slice(first, first + SCAN_EVENTS))
    return HitFile(Path(path), int(n), want, cfg)


def _check_labels(path: str | os.PathLike, label: h5py.Dataset) -> None:
    if label.ndim != 1 or label.dtype.kind not in "iub":
        raise TrigkitError(f"{path}: label must be one integer per event, got {label.dtype} "
                           f"of shape {list(label.shape)}")
    values = label[()]
    bad = values[(values < 0) | (values >= len(LABELS))] if values.size else values
    if bad.size:
        raise TrigkitError(f"{path}: label value {int(bad[0])} is not an event type; known: "
                           + ", ".join(f"{v}={k}" for k, v in LABELS.items()))


def read_hits(path: str | os.PathLike, f: h5py.File, index=slice(None)) -> np.ndarray:
    """``f["hits"][index]`` as uint8, refusing values other than 0/1 and damaged chunks."""
    with reading(path):
        hits = f["hits"][index]
    if hits.dtype != np.bool_ and hits.size and hits.max() > 1:
        raise TrigkitError(f"{path}: hit images hold values other than 0 and 1 (max "
                           f"{int(hits.max())}); is it a hit-image file?")
    return hits.astype(np.uint8, copy=False)


def read_hit_file(path: str | os.PathLike, keys: tuple[str, ...] = ("hits", "label")
                  ) -> tuple[HitFile, dict[str, np.ndarray]]:
    """Check the file, then read ``keys`` into memory (the hits checked as they are read)."""
    info = check_hit_file(path, need=keys if "hits" in keys else ("hits", *keys))
    with open_events_h5(path, need=keys) as f, reading(path):
        return info, {k: read_hits(path, f) if k == "hits" else f[k][()] for k in keys}


def as_hdf5(path: str | os.PathLike, cache_dir: Path = DATA_CACHE) -> Path:
    """An event file in the HDF5 layout: HDF5 files as they are; ROOT files (a TTree with a
    ``hits`` branch, as ``trigkit simulate --out x.root`` writes) converted once into the
    cache, keyed by the file's path, size and modification time."""
    p = Path(path)
    if p.suffix.lower() != ".root":
        return p
    if not p.is_file():
        raise TrigkitError(f"input file {p} not found")
    shapes = rootio.branches(p)
    if len(shapes.get("hits", ())) != 2:
        raise TrigkitError(f"{p} has no 'hits' branch of one (layers, eta bins) image per "
                           f"entry; its branches: {', '.join(shapes) or 'none'}")
    st = p.stat()
    key = {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return cached_file(cache_dir, f"converted_{p.stem}", key,
                       lambda out: _root_to_hdf5(p, out, list(shapes)))


def _root_to_hdf5(src: Path, dst: Path, names: list[str]) -> None:
    n = rootio.entries(src)
    attrs = rootio.attributes(src)
    with atomic_path(dst) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        for k, v in attrs.items():
            f.attrs[k] = v
        first = True
        for start in range(0, max(n, 1), SCAN_EVENTS):
            arrays, _ = rootio.read_branches(src, names, start=start, stop=start + SCAN_EVENTS)
            for k, v in arrays.items():
                if first:
                    f.create_dataset(k, shape=(n, *v.shape[1:]), dtype=v.dtype.newbyteorder("="),
                                     compression="lzf" if k == "hits" else None)
                f[k][start:start + len(v)] = v
            first = False
