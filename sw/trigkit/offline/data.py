"""The offline domain's data for the training core, registered in :mod:`trigkit.core.registry`:

- source ``dijet`` and format ``dijet`` (:mod:`trigkit.offline.dijet`, a resonance toy for
  CWoLa and ANODE searches);
- sources ``jets`` (:mod:`trigkit.offline.jets`), ``monojet`` and ``monojet_hist``
  (:mod:`trigkit.offline.monojet`), ``electrons`` (:mod:`trigkit.offline.electrons`), each
  generated once and cached by the hash of its settings;
- input formats ``jet_images`` (calorimeter images (N, C, H, W) with ``label`` and attribute
  ``label_names``; other HDF5/npz image files are converted once into the cache), ``table``
  (named feature columns of a CSV/Parquet/HDF5 table, :mod:`trigkit.offline.tabular`) and
  ``histograms`` (pseudo-experiments: 2-D (pT, eta) histograms of r events each, built from the
  events of each split separately, so that no event is shared between splits);
- the augmentation ``jet_symmetries`` (:func:`trigkit.offline.jetprep.augment`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from trigkit import __version__
from trigkit.core import registry
from trigkit.core.cache import cached_file
from trigkit.core.card import ModelCard
from trigkit.core.errors import TrigkitError
from trigkit.core.io import open_events_h5, reading
from trigkit.core.paths import DATA_CACHE
from trigkit.learn.data import (
    Split,
    check_shape,
    input_codes,
    labels_or_target,
    load_splits,
    split_arrays,
    split_indices,
)

from .dijet import (
    DATA_BACKGROUND,
    DijetConfig,
    features,
    in_sr,
    injected,
    read_dijet_h5,
    scaled_mass,
    write_dijet_h5,
)
from .electrons import ElectronConfig, write_electrons_h5
from .histograms import (
    HistBinning,
    background_shape,
    poisson_significance,
    pseudo_experiments,
    pseudo_experiments_multiclass,
)
from .jetprep import augment
from .jets import JetConfig, convert_jet_file, write_jets_h5
from .monojet import MonojetConfig, write_monojet_h5
from .tabular import read_table

TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".root")


def generated_file(card: ModelCard, cache_dir: Path, progress: bool = False) -> Path:
    """The offline generators' files (jets, monojet, electrons), cached by configuration hash
    (``monojet_hist`` builds its histograms from the monojet events)."""
    d = card.data
    source = "monojet" if d.source == "monojet_hist" else d.source
    if source == "jets":
        cfg = JetConfig.from_dict(dict(d.generator))

        def write(path: Path) -> None:
            write_jets_h5(path, cfg, d.sample, d.events, d.seed, progress=progress)
    elif source == "dijet":
        cfg = DijetConfig.from_dict(dict(d.generator))

        def write(path: Path) -> None:
            write_dijet_h5(path, cfg, d.events, d.seed)
    elif source == "monojet":
        cfg = MonojetConfig.from_dict(dict(d.generator))

        def write(path: Path) -> None:
            write_monojet_h5(path, cfg, d.events, d.seed)
    else:
        cfg = ElectronConfig.from_dict(dict(d.generator))

        def write(path: Path) -> None:
            write_electrons_h5(path, cfg, d.events, d.seed)
    sample = d.sample if source == "jets" else ""
    key = {"source": source, "generator": cfg.to_dict(), "sample": sample,
           "events": d.events, "seed": d.seed, "version": __version__}
    return cached_file(cache_dir, f"{source}{'_' + sample if sample else ''}_{d.events}", key,
                       write)


def converted_jet_file(path: Path, cache_dir: Path) -> Path:
    """Jet images from elsewhere (npz, other HDF5 keys) converted once to trigkit's layout."""
    if path.suffix.lower() in (".h5", ".hdf5"):
        with open_events_h5(path, need=()) as f, reading(path):
            if "images" in f and "label" in f and "label_names" in f.attrs:
                return path
    st = path.stat()
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return cached_file(cache_dir, f"converted_{path.stem}", key,
                       lambda out: convert_jet_file(path, out))


def load_jet_images(card: ModelCard, path: Path, streaming: bool | None = None) -> dict[str, Split]:
    with open_events_h5(path, need=("images", "label")) as f, reading(path):
        names = json.loads(f.attrs["label_names"]) if "label_names" in f.attrs else []
        pixel_size = float(f.attrs.get("pixel_size", 0.1))
        x = f["images"][()]
        label = f["label"][()]
        extra = {k: f[k][()] for k in f if k not in ("images", "label") and f[k].ndim == 1}
        if not isinstance(names, list) or label.ndim != 1 or len(label) != len(x) or any(
                len(v) != len(x) for v in extra.values()):
            raise TrigkitError(f"{path}: images, labels and per-jet arrays must have one entry "
                               "per jet, and label_names must be a JSON list")
        if x.dtype.kind not in "fiu" or not np.all(np.isfinite(x)):
            raise TrigkitError(f"{path}: images must be finite numbers")
    check_shape(card, x.shape[1:], path)
    target, usable = labels_or_target(card, label, names, extra, path)
    splits = split_arrays(card, path, input_codes(card, x), target, usable, extra)
    for sp in splits.values():
        sp.context["pixel_size"] = pixel_size
    return splits


def load_dijet(card: ModelCard, path: Path, streaming: bool | None = None) -> dict[str, Split]:
    """The dijet toy's data at the card's injected signal fraction (``evaluation.hunt.fraction``,
    0 without a hunt) split row by row. Classifiers (CWoLa) learn signal region (1) against
    sidebands (0) from the 4 features; density models (ANODE) read the features and the
    scaled mass as the last column, and train and validate on the sidebands only (the test
    split keeps every event). Truth ``mjj`` and ``is_signal`` are kept."""
    cfg = DijetConfig.from_dict(dict(card.data.generator))
    events = read_dijet_h5(path)
    reference = {k: v[events["part"] == DATA_BACKGROUND] for k, v in events.items()}
    hunt = card.evaluation.hunt
    data = injected(events, hunt.fraction if hunt is not None else 0.0)
    x = features(data, reference)
    sr = in_sr(data["mjj"], cfg)
    if card.task == "density":
        x = np.concatenate([x, scaled_mass(data["mjj"], cfg)[:, None]], axis=1)
        target = np.zeros(len(x), np.int64)
    else:
        target = sr.astype(np.int64)
    check_shape(card, x.shape[1:], path)
    splits = split_arrays(card, path, x, target, np.ones(len(x), bool),
                          {"mjj": data["mjj"], "is_signal": data["label"]})
    if card.task == "density":
        for name in ("train", "val"):
            splits[name] = splits[name].subset(~in_sr(splits[name].extra["mjj"], cfg))
    for sp in splits.values():
        sp.context["dijet"] = cfg
    return splits


def load_table(card: ModelCard, path: Path, streaming: bool | None = None) -> dict[str, Split]:
    """A table's feature rows (standardised with the training rows' statistics, NaN filled as
    the card says, as input codes) split row by row, with their targets. Rows of named classes
    the card does not list are left out; an integer label without a class is an error."""
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
    target, ok = labels_or_target(card, label, names, table.extra, path)
    usable &= ok
    x = table.features.astype(np.float64)
    check_shape(card, x.shape[1:], path)
    stats = None
    if d.standardise:
        train_idx = split_indices(len(x), d.split, d.split_seed, block=1)["train"]
        train_idx = train_idx[usable[train_idx]]
        stats = (np.nanmean(x[train_idx], axis=0), np.nanstd(x[train_idx], axis=0))
    splits = split_arrays(card, path, table_inputs(card, x, stats), target, usable,
                          table.extra)
    for sp in splits.values():
        sp.context["standardisation"] = stats
    return splits


def table_inputs(card: ModelCard, x: np.ndarray,
                 stats: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Feature rows as the network sees them: standardised with ``stats`` (the training rows'
    mean and standard deviation), NaN filled (``data.fill_nan``), as input codes."""
    if stats is not None:
        mean, std = stats
        x = (x - mean) / np.where(std > 0, std, 1.0)
    if card.data.fill_nan is not None:
        x = np.where(np.isnan(x), card.data.fill_nan, x)
    return input_codes(card, x)


#: Rows or images per chunk of ``trigkit predict``.
PREDICT_CHUNK = 8192


def jet_image_inputs(card: ModelCard, path: Path) -> Iterator[np.ndarray]:
    """A jet-image file's images (any layout :func:`converted_jet_file` reads) as the network's
    input codes, in chunks."""
    path = converted_jet_file(path, DATA_CACHE)
    with open_events_h5(path, need=("images",)) as f, reading(path):
        images = f["images"]
        check_shape(card, images.shape[1:], path)
        for first in range(0, images.shape[0], PREDICT_CHUNK):
            yield input_codes(card, images[first:first + PREDICT_CHUNK])


def table_rows(card: ModelCard, path: Path) -> Iterator[np.ndarray]:
    """A table's feature rows prepared as in training: standardised with the statistics of
    the card's own training rows, NaN filled, as input codes; in chunks."""
    d = card.data
    stats = (load_splits(card)["train"].context["standardisation"] if d.standardise else None)
    table = read_table(path, d.features, allow_nan=d.features if d.fill_nan is not None else ())
    x = table_inputs(card, table.features.astype(np.float64), stats)
    for first in range(0, len(x), PREDICT_CHUNK):
        yield x[first:first + PREDICT_CHUNK]


def table_classes(path: Path, features: tuple[str, ...], label: str) -> tuple[str, ...]:
    """The classes a table's label column holds: its names (string labels, or an HDF5
    ``label_names`` attribute), else ``class0`` .. ``classK`` for integer labels 0..K."""
    table = read_table(path, features, label, allow_nan=features)
    names = list(table.label_names) or _h5_label_names(path)
    if names:
        return tuple(names)
    return tuple(f"class{k}" for k in range(int(table.label.max()) + 1))


def _h5_label_names(path: Path) -> list[str]:
    if path.suffix.lower() not in (".h5", ".hdf5"):
        return []
    with open_events_h5(path, need=()) as f, reading(path):
        return list(json.loads(f.attrs["label_names"])) if "label_names" in f.attrs else []


def load_histograms(card: ModelCard, path: Path, streaming: bool | None = None) -> dict[str, Split]:
    """Pseudo-experiments per split from that split's events only (see module docstring)."""
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
    out, shape = {}, None
    for k, (name, idx) in enumerate(events.items()):
        pools = event_pools(table.features[idx], table.label[idx], names, signals)
        if shape is None:  # the expected background shape: from the training split only
            shape = background_shape(pools[names[0]])
        n_sets = max(10, round(h.sets * d.split[k] / d.split[0]))
        x, y, counts = histogram_sets(card, pools, h.r, h.s_over_sqrt_b, n_sets,
                                      seed=d.seed * 1000 + k, shape=shape)
        check_shape(card, x.shape[1:], path)
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


for _name, _fmt in (("jets", "jet_images"), ("dijet", "dijet"), ("monojet", "table"),
                    ("electrons", "table"), ("monojet_hist", "histograms")):
    registry.register_source(registry.DataSource(_name, _fmt, generated_file))
registry.register_format(registry.InputFormat("jet_images", load_jet_images,
                                              prepare_file=converted_jet_file,
                                              read_inputs=jet_image_inputs))
registry.register_format(registry.InputFormat("table", load_table, file_suffixes=TABLE_SUFFIXES,
                                              signed_codes=True, read_inputs=table_rows))
registry.register_format(registry.InputFormat("histograms", load_histograms))
registry.register_format(registry.InputFormat("dijet", load_dijet))
registry.register_augmentation("jet_symmetries", "jet_images", augment)
