"""Safe file output: atomic writes and overwrite protection shared by every stage."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
from tqdm import tqdm

from .errors import TrigkitError, one_line


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate an output file path before any work is done.

    Raises TrigkitError if the file exists (and ``overwrite`` is False), if its directory does not
    exist, or if the directory is not writable.
    """
    out = Path(path)
    if out.exists() and not overwrite:
        raise TrigkitError(f"output file {out} exists; pass --overwrite to replace it")
    if out.exists() and out.is_dir():
        raise TrigkitError(f"output path {out} is a directory; give a file name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise TrigkitError(f"output directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise TrigkitError(f"output directory {parent} is not writable; choose another --out")
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    On any exception the temporary file is removed, so no partial output is ever left behind.
    """
    out = check_output_path(path, overwrite=overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent or ".")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically (replacing an existing generated file)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON atomically, sorted and indented so diffs stay readable."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_figure_atomic(fig, path: str | os.PathLike, **kwargs) -> Path:
    """Save a matplotlib figure atomically (format from the final suffix)."""
    out = Path(path)
    fmt = out.suffix.lstrip(".") or "png"
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return out


def open_events_h5(path: str | os.PathLike, need: tuple[str, ...] = ("hits",)):
    """Open an event HDF5 file for reading, with clear errors if it is missing, unreadable or
    lacks one of the datasets in ``need``."""
    p = Path(path)
    if not p.is_file():
        raise TrigkitError(f"input file {p} not found")
    try:
        f = h5py.File(p, "r")
    except Exception as err:  # noqa: BLE001 - h5py raises several types for damaged files
        raise TrigkitError(f"{p} is not a readable HDF5 file ({one_line(err)})") from None
    try:
        missing = [k for k in need if k not in f or not isinstance(f[k], h5py.Dataset)]
    except Exception as err:  # noqa: BLE001 - a damaged group table
        f.close()
        raise TrigkitError(f"{p} is damaged ({one_line(err)})") from None
    if missing:
        f.close()
        raise TrigkitError(f"{p} has no {missing[0]!r} dataset; is it a trigkit event file?")
    return f


@contextlib.contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Turn any failure while reading ``path`` (a damaged dataset, a bad chunk, a value of
    the wrong kind) into one clear TrigkitError naming the file."""
    try:
        yield
    except TrigkitError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
        raise TrigkitError(f"{path} is damaged or not in the expected layout "
                           f"({type(err).__name__}: {one_line(err)})") from None


def chunk_progress(chunks: Iterator, total: int, enabled: bool, unit: str = "ev",
                   desc: str = "") -> Iterator:
    """Pass ``(first, chunk)`` pairs through, advancing a tqdm bar by ``len(chunk["label"])``
    when ``enabled`` (the generators' chunked loops)."""
    if not enabled:
        yield from chunks
        return

    with tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True) as bar:
        for first, chunk in chunks:
            yield first, chunk
            bar.update(len(chunk["label"]))
