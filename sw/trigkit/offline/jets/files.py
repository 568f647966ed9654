"""Jet-image files: trigkit's own HDF5 layout (written by :func:`write_jets_h5`) and readers
that convert image files produced elsewhere (HDF5 or npz, other dataset names and layouts)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trigkit import __version__
from trigkit.core.errors import TrigkitError, one_line
from trigkit.core.io import atomic_path, check_output_path, reading

from .config import IMAGE_KEYS, LABEL_KEYS, LABEL_NAMES, TRUTH_UNITS, JetConfig
from .physics import check_request, empty_chunk, iter_chunks, jet_progress


def write_jets_h5(path: str | os.PathLike, cfg: JetConfig, sample: str, n: int, seed: int,
                  progress: bool = False, overwrite: bool = False) -> Path:
    """Generate straight into an HDF5 file (streamed by chunk, written atomically).

    Datasets ``images`` (n, 2, H, W) float32, ``label`` int64 and the TRUTH_UNITS arrays; file
    attributes ``label_names`` (JSON list), ``config`` (JSON), ``seed``, ``sample``,
    ``pixel_size``, ``normalised``. Byte-for-byte reproducible for the same arguments.
    """

    check_request(sample, n, seed)
    out = check_output_path(path, overwrite=overwrite)
    template = empty_chunk(cfg, sample)
    with atomic_path(out, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.attrs["label_names"] = json.dumps(list(LABEL_NAMES))
            f.attrs["config"] = json.dumps(cfg.to_dict(), sort_keys=True)
            f.attrs["seed"] = seed
            f.attrs["sample"] = sample
            f.attrs["n_jets"] = n
            f.attrs["pixel_size"] = cfg.pixel
            f.attrs["normalised"] = "normalise" in cfg.preprocess
            f.attrs["image_axes"] = "jet, channel (0 EM, 1 HAD), eta, phi"
            f.attrs["trigkit_version"] = __version__
            dsets = {}
            for key, arr in template.items():
                chunks = (min(max(n, 1), 256), *arr.shape[1:])
                dsets[key] = f.create_dataset(
                    key, shape=(n, *arr.shape[1:]), dtype=arr.dtype,
                    chunks=chunks if n else None,
                    compression="lzf" if key == "images" and n else None, track_times=False)
                if key in TRUTH_UNITS:
                    dsets[key].attrs["units"] = TRUTH_UNITS[key]
            for first, chunk in jet_progress(iter_chunks(cfg, sample, n, seed), n, progress):
                for key, arr in chunk.items():
                    dsets[key][first:first + len(arr)] = arr
    return out




# ---- files produced elsewhere ---------------------------------------------------------------
def _pick(keys: list[str], wanted: str | None, guesses: tuple[str, ...], what: str,
          path: Path) -> str:
    if wanted is not None:
        if wanted not in keys:
            raise TrigkitError(f"{path} has no {what} dataset {wanted!r}; available: "
                               + (", ".join(keys) or "none"))
        return wanted
    for g in guesses:
        if g in keys:
            return g
    raise TrigkitError(f"{path}: found no {what} dataset (tried {', '.join(guesses)}); "
                       f"available: {', '.join(keys) or 'none'}; name it explicitly")


def _load_arrays(path: Path, images_key: str | None, labels_key: str | None):
    """(images, labels, label_names or None, other 1-D arrays, attrs) from HDF5 or npz."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise TrigkitError(f"jet image file {path} not found")
    if suffix in (".h5", ".hdf5"):
        try:
            f = h5py.File(path, "r")
        except Exception as err:  # noqa: BLE001 - h5py raises several types for damaged files
            raise TrigkitError(f"{path} is not a readable HDF5 file ({one_line(err)})") from None
        with f, reading(path):
            keys = [k for k in f if isinstance(f[k], h5py.Dataset)]
            ik = _pick(keys, images_key, IMAGE_KEYS, "image", path)
            lk = _pick(keys, labels_key, LABEL_KEYS, "label", path)
            names = f.attrs.get("label_names")
            attrs = {k: f.attrs[k] for k in ("pixel_size",) if k in f.attrs}
            images, labels = f[ik][()], f[lk][()]
            other = {k: f[k][()] for k in keys
                     if k not in (ik, lk) and f[k].ndim == 1 and f[k].shape[0] == len(images)}
    elif suffix == ".npz":
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as err:  # noqa: BLE001 - zip and format errors alike
            raise TrigkitError(f"{path} is not a readable npz file ({one_line(err)})") from None
        with data, reading(path):
            keys = list(data.files)
            ik = _pick(keys, images_key, IMAGE_KEYS, "image", path)
            lk = _pick(keys, labels_key, LABEL_KEYS, "label", path)
            images, labels = data[ik], data[lk]
            names = data["label_names"] if "label_names" in keys else None
            attrs = {"pixel_size": data["pixel_size"]} if "pixel_size" in keys else {}
            other = {k: data[k] for k in keys if k not in (ik, lk, "label_names", "pixel_size")
                     and data[k].ndim == 1 and len(data[k]) == len(images)}
    else:
        raise TrigkitError(f"{path}: unsupported jet image file type {path.suffix!r}; "
                           "use .h5, .hdf5 or .npz")
    return images, labels, names, other, attrs


def _label_names(names: Any, n_classes: int, path: Path) -> tuple[str, ...]:
    if names is None:
        return tuple(f"class{i}" for i in range(n_classes))
    if isinstance(names, bytes):
        names = names.decode()
    if isinstance(names, str):
        try:
            names = json.loads(names)
        except json.JSONDecodeError:
            names = [s.strip() for s in names.split(",")]
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in np.ravel(names))
    if len(names) < n_classes:
        raise TrigkitError(f"{path}: label_names lists {len(names)} classes but labels go up to "
                           f"{n_classes - 1}; fix the label_names attribute")
    return names


def read_jet_images(path: str | os.PathLike, images_key: str | None = None,
                    labels_key: str | None = None) -> tuple[np.ndarray, np.ndarray,
                                                             tuple[str, ...]]:
    """Jet images and labels from an HDF5 (.h5/.hdf5) or .npz file produced elsewhere.

    Returns images (N, C, H, W) float32, labels (N,) int64 and the class names. Dataset names
    are guessed from IMAGE_KEYS and LABEL_KEYS unless given. Image layouts: (N, H, W) is one
    layer; (N, C, H, W); or channels-last (N, H, W, C), recognised when the last axis has at
    most 4 entries and the two before it more than 4. Labels may be integers, integral floats
    or one-hot rows; class names come from a ``label_names`` attribute (JSON list) or array,
    else ``class0``, ``class1``, ...
    """
    images, labels, names, _, _ = _load_arrays(Path(path), images_key, labels_key)
    images, labels = _checked(Path(path), images, labels)
    n_classes = int(labels.max()) + 1 if labels.size else 0
    return images, labels, _label_names(names, n_classes, Path(path))


def _checked(path: Path, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    if images.dtype.kind not in "biuf":
        raise TrigkitError(f"{path}: images have non-numeric dtype {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:
        if images.shape[-1] <= 4 and min(images.shape[1:3]) > 4:
            images = np.moveaxis(images, -1, 1)
    else:
        raise TrigkitError(f"{path}: images must be (N, H, W), (N, C, H, W) or (N, H, W, C); "
                           f"got shape {images.shape}")
    images = np.ascontiguousarray(images, dtype=np.float32)
    if not np.isfinite(images).all():
        bad = int((~np.isfinite(images)).any(axis=(1, 2, 3)).sum())
        raise TrigkitError(f"{path}: {bad} images contain NaN or infinite pixels; clean the file")
    if (images < 0).any():
        bad = int((images < 0).any(axis=(1, 2, 3)).sum())
        raise TrigkitError(f"{path}: {bad} images have negative pixels; jet images must hold "
                           "non-negative energies (apply a threshold first)")
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[0] == len(images):
        onehot = labels.dtype.kind in "biuf" and np.isin(labels, (0, 1)).all() and (
            labels.sum(axis=1) == 1).all()
        if not onehot:
            raise TrigkitError(f"{path}: 2-D labels must be one-hot rows; got shape "
                               f"{labels.shape} with other values")
        labels = np.argmax(labels, axis=1)
    if labels.ndim != 1 or len(labels) != len(images):
        raise TrigkitError(f"{path}: {len(images)} images but labels of shape {labels.shape}; "
                           "need one label per image")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
            raise TrigkitError(f"{path}: labels must be integer class indices; found "
                               "non-integer values")
    elif labels.dtype.kind not in "biu":
        raise TrigkitError(f"{path}: labels must be integer class indices; got dtype "
                           f"{labels.dtype}")
    labels = labels.astype(np.int64)
    if (labels < 0).any():
        raise TrigkitError(f"{path}: labels must be >= 0 class indices; found {labels.min()}")
    return images, labels


def convert_jet_file(src: str | os.PathLike, dst: str | os.PathLike,
                     overwrite: bool = False) -> Path:
    """Rewrite a jet-image file from elsewhere (see :func:`read_jet_images`) in trigkit's HDF5
    layout: ``images`` (N, C, H, W) float32, ``label`` int64, other per-jet 1-D arrays, and
    attributes ``label_names``, ``source`` and (when known) ``pixel_size``."""
    out = check_output_path(dst, overwrite=overwrite)
    src = Path(src)
    images, labels, names, other, attrs = _load_arrays(src, None, None)
    images, labels = _checked(src, images, labels)
    names = _label_names(names, int(labels.max()) + 1 if labels.size else 0, src)
    with atomic_path(out, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.attrs["label_names"] = json.dumps(list(names))
            f.attrs["source"] = str(src)
            if "pixel_size" in attrs:
                f.attrs["pixel_size"] = float(np.asarray(attrs["pixel_size"]).ravel()[0])
            n = len(images)
            f.create_dataset("images", data=images, track_times=False,
                             chunks=(min(max(n, 1), 256), *images.shape[1:]) if n else None,
                             compression="lzf" if n else None)
            f.create_dataset("label", data=labels, track_times=False)
            for key, arr in other.items():
                if np.asarray(arr).dtype.kind in "biuf" and key not in ("images", "label"):
                    f.create_dataset(key, data=arr, track_times=False)
    return out

