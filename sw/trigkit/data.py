"""From event files to training batches: generation and caching, splitting, targets, streaming.

Events are split into train/validation/test by blocks of ``BLOCK`` consecutive events assigned
by the card's split seed (simulated events are independent, so blocks are as good as single
events, and blocks let large files be streamed with contiguous reads).

Input formats (``card.data.input_format``):

- ``hits``: RPC hit images (CONTRACT.md HDF5, ``hits`` + ``label`` + truth), streamed when large;
- ``jet_images``: calorimeter images (N, C, H, W) with ``label`` and attribute ``label_names``
  (trigkit.jets layout; other HDF5/npz image files are converted once into the cache);
- ``table``: named feature columns of a CSV/Parquet/HDF5 table (trigkit.tabular);
- ``histograms``: pseudo-experiments, 2-D (pT, eta) histograms of r events each, built from the
  events of each split separately, so that no event is shared between splits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .card import GENERATED_SOURCES, ModelCard
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


def _generated_file(card: ModelCard, cache_dir: Path, progress: bool) -> Path:
    """The offline generators' files (jets, monojet, electrons), cached by configuration hash."""
    d = card.data
    source = "monojet" if d.source == "monojet_hist" else d.source
    if source == "jets":
        from .jets import JetConfig, write_jets_h5

        cfg = JetConfig.from_dict(dict(d.generator))

        def write(path: Path) -> None:
            write_jets_h5(path, cfg, d.sample, d.events, d.seed, progress=progress)
    elif source == "monojet":
        from .eventgen import MonojetConfig, write_monojet_h5

        cfg = MonojetConfig.from_dict(dict(d.generator))

        def write(path: Path) -> None:
            write_monojet_h5(path, cfg, d.events, d.seed)
    else:
        from .eventgen import ElectronConfig, write_electrons_h5

        cfg = ElectronConfig.from_dict(dict(d.generator))

        def write(path: Path) -> None:
            write_electrons_h5(path, cfg, d.events, d.seed)
    sample = d.sample if source == "jets" else ""
    key = json.dumps({"source": source, "generator": cfg.to_dict(), "sample": sample,
                      "events": d.events, "seed": d.seed, "version": __version__},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = cache_dir / f"{source}{'_' + sample if sample else ''}_{d.events}_{digest}.h5"
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        write(path)
    return path


def _converted_jet_file(path: Path, cache_dir: Path) -> Path:
    """Jet images from elsewhere (npz, other HDF5 keys) converted once to trigkit's layout."""
    import h5py

    if path.suffix.lower() in (".h5", ".hdf5"):
        with h5py.File(path, "r") as f:
            if "images" in f and "label" in f and "label_names" in f.attrs:
                return path
    from .jets import convert_jet_file

    st = path.stat()
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    out = cache_dir / f"converted_{path.stem}_{hashlib.sha256(key.encode()).hexdigest()[:12]}.h5"
    if not out.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        convert_jet_file(path, out)
    return out


def dataset_file(card: ModelCard, cache_dir: Path = DATA_CACHE, progress: bool = False) -> Path:
    """Path of the card's event file, generating it (cached by configuration hash) if needed."""
    if card.data.source in GENERATED_SOURCES and card.data.source != "simulate":
        return _generated_file(card, cache_dir, progress)
    if card.data.source != "simulate":
        path = Path(card.data.source)
        if not path.is_file():
            raise TrigkitError(
                f"data.source {path} not found; give a data file or one of the generators: "
                + ", ".join(GENERATED_SOURCES))
        if card.data.input_format == "jet_images":
            return _converted_jet_file(path, cache_dir)
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
        raise TrigkitError(f"{where} has labels {unknown} without a name; known: "
                           + ", ".join(f"{v}={k}" for k, v in label_names.items()))
    class_of = {label_names[c]: i for i, c in enumerate(d.classes)}
    for src, dst in d.class_map.items():
        class_of[label_names[src]] = d.classes.index(dst)
    lut = np.full(max(label_names.values()) + 1, -1, np.int64)
    for code, idx in class_of.items():
        lut[code] = idx
    return lut[label]


def _targets(card: ModelCard, f) -> tuple[np.ndarray, np.ndarray]:
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
    fmt = card.data.input_format
    if fmt == "hits":
        splits = _load_hits(card, Path(path), streaming)
    elif fmt == "jet_images":
        splits = _load_jet_images(card, Path(path))
    elif fmt == "table":
        splits = _load_table(card, Path(path))
    else:
        splits = _load_histograms(card, Path(path))
    if card.data.train_on:
        wanted = [card.data.classes.index(c) for c in card.data.train_on
                  if c in card.data.classes]
        if len(wanted) != len(card.data.train_on):
            raise TrigkitError(f"data.train_on {list(card.data.train_on)} must name classes of "
                               f"data.classes {list(card.data.classes)}")
        for name in ("train", "val"):
            splits[name] = splits[name].subset(np.isin(splits[name].target, wanted))
    for name, sp in splits.items():
        if len(sp) == 0:
            raise TrigkitError(f"the {name} split of {path} has no usable events for {card.name}")
    return splits


def _check_shape(card: ModelCard, shape: tuple[int, ...], path: Path) -> None:
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


def _split_arrays(card: ModelCard, path: Path, x: np.ndarray, target: np.ndarray,
                  usable: np.ndarray, extra: dict[str, np.ndarray]) -> dict[str, Split]:
    parts = split_indices(len(x), card.data.split, card.data.split_seed, block=1)
    out = {}
    for name, idx in parts.items():
        idx = idx[usable[idx]]
        out[name] = Split(name, path, idx, target[idx], x[idx],
                          {k: v[idx] for k, v in extra.items()})
    return out


def _load_jet_images(card: ModelCard, path: Path) -> dict[str, Split]:
    with open_events_h5(path, need=("images", "label")) as f:
        names = json.loads(f.attrs["label_names"]) if "label_names" in f.attrs else []
        pixel_size = float(f.attrs.get("pixel_size", 0.1))
        x = f["images"][()]
        label = f["label"][()]
        extra = {k: f[k][()] for k in f if k not in ("images", "label") and f[k].ndim == 1}
    _check_shape(card, x.shape[1:], path)
    target, usable = _labels_or_target(card, label, names, extra, path)
    splits = _split_arrays(card, path, input_codes(card, x), target, usable, extra)
    for sp in splits.values():
        sp.context["pixel_size"] = pixel_size
    return splits


def _labels_or_target(card: ModelCard, label: np.ndarray, names: list[str],
                      extra: dict[str, np.ndarray], path: Path) -> tuple[np.ndarray, np.ndarray]:
    if card.task == "regression":
        if card.data.target not in extra:
            raise TrigkitError(f"{path} has no {card.data.target!r} column for regression; "
                               f"available: {', '.join(extra)}")
        y = extra[card.data.target].astype(np.float32)
        return y, np.isfinite(y)
    codes = {n: i for i, n in enumerate(names)} or {
        f"class{i}": i for i in range(int(label.max()) + 1)}
    y = class_targets(card, label, codes, str(path))
    return y, y >= 0


def _load_table(card: ModelCard, path: Path) -> dict[str, Split]:
    from .tabular import read_table

    d = card.data
    extra_cols = tuple(dict.fromkeys((*d.keep, *d.where)))
    table = read_table(path, d.features, d.label_column if card.task != "regression" else None,
                       extra=extra_cols + ((d.target,) if card.task == "regression" else ()),
                       allow_nan=d.features if d.fill_nan is not None else ())
    names = list(table.label_names) or _h5_label_names(path)
    usable = np.ones(len(table.features), bool)
    for col, value in d.where.items():
        usable &= table.extra[col] == value
    label = table.label if table.label is not None else np.zeros(len(usable), np.int64)
    target, ok = _labels_or_target(card, label, names, table.extra, path)
    usable &= ok
    x = table.features.astype(np.float64)
    _check_shape(card, x.shape[1:], path)
    if d.standardise:
        train_idx = split_indices(len(x), d.split, d.split_seed, block=1)["train"]
        train_idx = train_idx[usable[train_idx]]
        mean = np.nanmean(x[train_idx], axis=0)
        std = np.nanstd(x[train_idx], axis=0)
        x = (x - mean) / np.where(std > 0, std, 1.0)
    if d.fill_nan is not None:
        x = np.where(np.isnan(x), d.fill_nan, x)
    return _split_arrays(card, path, input_codes(card, x), target, usable, table.extra)


def _h5_label_names(path: Path) -> list[str]:
    if path.suffix.lower() not in (".h5", ".hdf5"):
        return []
    import h5py

    with h5py.File(path, "r") as f:
        return list(json.loads(f.attrs["label_names"])) if "label_names" in f.attrs else []


def _load_histograms(card: ModelCard, path: Path) -> dict[str, Split]:
    """Pseudo-experiments per split from that split's events only (see module docstring)."""
    from .tabular import read_table

    d, h = card.data, card.data.hist
    table = read_table(path, ("jet_pt", "jet_eta"), "label")
    names = list(table.label_names) or _h5_label_names(path)
    events = split_indices(len(table.features), d.split, d.split_seed, block=1)
    signals = list(h.signals) or [n for n in names if n != names[0]]
    unknown = [s for s in signals if s not in names]
    if unknown:
        raise TrigkitError(f"data.hist.signals {unknown} are not processes of {path}; "
                           f"available: {', '.join(names[1:])}")
    expected = ([names[0], *signals] if h.mode == "multiclass"
                else [names[0], list(card.data.classes)[-1]])
    if list(card.data.classes) != expected or (h.mode == "binary" and len(expected) != 2):
        what = ("the background and each signal, in order" if h.mode == "multiclass"
                else "two: the background and a name for background + signal")
        raise TrigkitError(f"{card.name}: data.classes {list(card.data.classes)} do not fit "
                           f"data.hist.mode {h.mode}; it needs {what}, e.g. {expected}")
    from .histograms import background_shape

    out, shape = {}, None
    for k, (name, idx) in enumerate(events.items()):
        pools = event_pools(table.features[idx], table.label[idx], names, signals)
        if shape is None:  # the expected background shape: from the training split only
            shape = background_shape(pools[names[0]])
        n_sets = max(10, round(h.sets * d.split[k] / d.split[0]))
        x, y, counts = histogram_sets(card, pools, h.r, h.s_over_sqrt_b, n_sets,
                                      seed=d.seed * 1000 + k, shape=shape)
        _check_shape(card, x.shape[1:], path)
        out[name] = Split(name, path, np.arange(len(x)), y, x, {"counts": counts},
                          {"pools": pools, "signals": signals, "background_shape": shape})
    return out


def event_pools(features: np.ndarray, label: np.ndarray, names: list[str],
                signals: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """(pt, eta) arrays of the background (label 0) and of each signal process."""
    pools = {}
    for proc in [names[0], *signals]:
        sel = label == names.index(proc)
        pools[proc] = {"pt": features[sel, 0], "eta": features[sel, 1]}
    return pools


def histogram_sets(card: ModelCard, pools: dict, r: int, s_over_sqrt_b: float, n_sets: int,
                   seed: int, shape: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pseudo-experiment histograms for the card's hist mode: (network inputs, labels, counts).

    The inputs are per-bin Poisson significances against the background ``shape`` (default:
    the pools' own background; the loaders pass the training split's, so no split sees another
    split's events); the raw counts serve the cut-based baselines."""
    from .histograms import (
        HistBinning,
        background_shape,
        poisson_significance,
        pseudo_experiments,
        pseudo_experiments_multiclass,
    )

    h = card.data.hist
    names = list(pools)
    background, signals = pools[names[0]], {n: pools[n] for n in names[1:]}
    binning = HistBinning()
    if h.mode == "multiclass":
        x, y = pseudo_experiments_multiclass(background, signals, r, s_over_sqrt_b,
                                             max(1, n_sets // len(names)), seed, binning)
    else:  # SM vs SM + any signal: the signal sets are shared equally among the models
        xs, ys = [], []
        per = max(2, n_sets // len(signals))
        for k, sig in enumerate(signals.values()):
            x_k, y_k = pseudo_experiments(background, sig, r, s_over_sqrt_b, per,
                                          seed * 31 + k, binning)
            xs.append(x_k)
            ys.append(y_k)
        x, y = np.concatenate(xs), np.concatenate(ys)
    if shape is None:
        shape = background_shape(background, binning)
    return poisson_significance(x, shape), np.asarray(y, np.int64), x


def augmenter(card: ModelCard) -> Callable[[np.ndarray, np.random.Generator], np.ndarray] | None:
    """The card's training-time augmentation (``data.augment``), or None."""
    if not card.data.augment:
        return None
    from .jetprep import augment

    if card.data.input_format != "jet_images":
        raise TrigkitError("data.augment jet_symmetries needs jet images")
    return augment


def _load_hits(card: ModelCard, path: Path, streaming: bool | None) -> dict[str, Split]:
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
        splits[name] = Split(name, Path(path), idx, target[idx],
                             None if hits is None else hits[idx])
    return splits
