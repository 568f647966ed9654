"""ROOT files through uproot: one TTree of flat branches read as numpy columns, and written.

A branch is a column when it holds one value per entry, or a fixed-size array per entry (e.g.
``hits`` of shape (9, 384)). Jagged (variable-length) branches are refused by name: flatten or
pad them first. Files with several trees name the one to read (``events``, ``tree``, ``t`` are
tried, or the only tree); strings stored beside the tree (TObjString) are the file's attributes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import uproot

from .errors import TrigkitError, one_line
from .io import atomic_path, check_output_path

#: Tree names tried, in order, when a file holds several trees.
TREE_NAMES = ("events", "tree", "t")


def _tree(f, path: Path, tree: str | None):
    trees = [k.split(";")[0] for k, c in f.classnames().items() if c == "TTree"]
    if tree is not None:
        if tree not in trees:
            raise TrigkitError(f"{path} has no TTree {tree!r}; its trees: "
                               + (", ".join(trees) or "none"))
        return f[tree]
    if not trees:
        found = ", ".join(f.classnames().values()) or "nothing"
        raise TrigkitError(f"{path} holds no TTree (found: {found}); trigkit reads TTrees of "
                           "flat branches")
    for name in (*TREE_NAMES, trees[0]):
        if name in trees and (len(trees) == 1 or name in TREE_NAMES):
            return f[name]
    raise TrigkitError(f"{path} holds several trees ({', '.join(trees)}); name one of "
                       f"{', '.join(TREE_NAMES)} or keep one tree per file")


def _open(path: str | os.PathLike):
    p = Path(path)
    if not p.is_file():
        raise TrigkitError(f"input file {p} not found")
    try:
        return uproot.open(p)
    except Exception as err:  # noqa: BLE001 - uproot raises many types for damaged files
        raise TrigkitError(f"{p} is not a readable ROOT file ({one_line(err)})") from None


def branches(path: str | os.PathLike, tree: str | None = None) -> dict[str, tuple[int, ...]]:
    """Flat branch name -> per-entry shape (``()`` for one value per entry), in file order;
    jagged branches are refused by name."""
    p = Path(path)
    with _open(p) as f:
        try:
            t = _tree(f, p, tree)
            out = {}
            for name in t.keys(recursive=False):
                interp = t[name].interpretation
                if type(interp).__name__ != "AsDtype":
                    raise TrigkitError(
                        f"branch {name!r} of {p} is {type(interp).__name__} (jagged or an "
                        "object), not one value or one fixed-size array per entry; flatten or "
                        "pad it before reading it with trigkit")
                out[name] = tuple(interp.to_dtype.shape)
            return out
        except TrigkitError:
            raise
        except Exception as err:  # noqa: BLE001 - a damaged tree header
            raise TrigkitError(f"{p} is damaged ({one_line(err)})") from None


def read_branches(path: str | os.PathLike, names: list[str], tree: str | None = None,
                  start: int | None = None, stop: int | None = None
                  ) -> tuple[dict[str, np.ndarray], int]:
    """(name -> numpy array, entries) of the named flat branches, entries ``start:stop``."""
    p = Path(path)
    flat = branches(p, tree)
    missing = [n for n in names if n not in flat]
    if missing:
        raise TrigkitError(f"{p} has no branch {missing[0]!r}; available: "
                           + (", ".join(flat) or "(none)"))
    with _open(p) as f:
        try:
            t = _tree(f, p, tree)
            lo, hi = start or 0, t.num_entries if stop is None else min(stop, t.num_entries)
            arrays = (t.arrays(names, entry_start=lo, entry_stop=hi, library="np")
                      if names else {})
            return {k: np.asarray(arrays[k]) for k in names}, max(hi - lo, 0)
        except Exception as err:  # noqa: BLE001 - damaged baskets
            raise TrigkitError(f"{p} is damaged ({one_line(err)})") from None


def entries(path: str | os.PathLike, tree: str | None = None) -> int:
    """Entries of the file's tree."""
    p = Path(path)
    with _open(p) as f:
        return int(_tree(f, p, tree).num_entries)


def attributes(path: str | os.PathLike) -> dict[str, str]:
    """The strings stored beside the tree (TObjString), by name."""
    p = Path(path)
    with _open(p) as f:
        return {k.split(";")[0]: str(f[k]) for k, c in f.classnames().items()
                if c == "TObjString"}


def write_tree(path: str | os.PathLike, chunks: Iterator[Mapping[str, np.ndarray]],
               attrs: Mapping[str, str] | None = None, tree: str = "events",
               overwrite: bool = False) -> Path:
    """Write columns (from an iterator of equally keyed chunks) as one TTree, atomically;
    ``attrs`` become TObjStrings beside it."""
    out = check_output_path(path, overwrite=overwrite)
    with atomic_path(out, overwrite=overwrite) as tmp:
        with uproot.recreate(tmp) as f:
            for key, value in (attrs or {}).items():
                f[key] = str(value)
            created = False
            for chunk in chunks:
                arrays = {k: np.ascontiguousarray(v) for k, v in chunk.items()}
                if not created:
                    f.mktree(tree, {k: (v.dtype, v.shape[1:]) if v.ndim > 1 else v.dtype
                                    for k, v in arrays.items()})
                    created = True
                if len(next(iter(arrays.values()))):
                    f[tree].extend(arrays)
    return out
