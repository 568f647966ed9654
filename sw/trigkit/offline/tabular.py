"""Generic tabular event reader and writer: CSV, Parquet, ROOT or HDF5 files with named columns.

Longer than 500 lines: one reader for four file formats, whose column checks (numbers, missing
values, labels) are shared by all of them.

A table is a set of equally long 1-D columns (one value per event). :func:`read_table` picks the
feature columns (as one float32 matrix), an optional label column and extra columns kept for
evaluation; every problem with the file is a :class:`~trigkit.errors.TrigkitError` naming the
file and the column. Formats, chosen by the file suffix (see sw/docs/tabular.md):

- ``.csv``: a header line with the column names, read with ``pyarrow.csv`` (types inferred;
  empty fields and ``nan``/``NA``/``null`` are missing values, i.e. NaN);
- ``.parquet`` / ``.pq``: read with ``pyarrow.parquet`` (nulls are NaN);
- ``.root``: the flat branches (one value per entry) of the file's TTree, read with uproot;
  jagged branches are refused by name (:mod:`trigkit.core.rootio`);
- ``.h5`` / ``.hdf5``: the columns are the 1-D datasets of the root group, each field of a 1-D
  compound (structured) dataset at the root being a column too; when the root holds no such
  dataset, the group ``table`` (or else the first group) is searched the same way. Datasets of
  other shapes (images) are not columns. Integer class names come from a JSON attribute
  ``label_names`` on the label dataset or, for a label column named ``label``, on the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from trigkit.core import rootio
from trigkit.core.errors import TrigkitError
from trigkit.core.io import atomic_path, check_output_path

#: File suffixes read_table understands, by format.
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".h5": "hdf5",
            ".hdf5": "hdf5", ".root": "root"}
#: Groups searched (in this order, then the first group) when an HDF5 root holds no columns.
H5_TABLE_GROUP = "table"


@dataclass
class Table:
    """Columns read from a table file.

    Attributes:
        features: (N, F) float32 feature matrix, columns in the requested order.
        feature_names: names of the F feature columns.
        label: (N,) int64 class indices, or None when no label column was requested.
        label_names: class name of each index (sorted unique strings for string labels, the
            file's ``label_names`` attribute for HDF5; empty when unknown).
        extra: requested extra columns as read (numbers keep their dtype, strings are str).
    """

    features: np.ndarray
    feature_names: tuple[str, ...]
    label: np.ndarray | None = None
    label_names: tuple[str, ...] = ()
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.features.shape[0])


# ---- format back-ends: name -> raw column (numpy, numeric or str/object) ----------------------


def _format_of(path: Path) -> str:
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise TrigkitError(
            f"{path}: unknown table suffix {path.suffix or '(none)'!r}; supported: "
            + ", ".join(SUFFIXES)
        )
    return fmt


def _check_file(path: str | os.PathLike) -> tuple[Path, str]:
    p = Path(path)
    fmt = _format_of(p)
    if not p.is_file():
        raise TrigkitError(f"input file {p} not found")
    if p.stat().st_size == 0:
        raise TrigkitError(f"{p} is empty (0 bytes); it holds no table")
    return p, fmt


def _missing(path: Path, name: str, available: Sequence[str], what: str = "column") -> TrigkitError:
    avail = ", ".join(available) if available else "(none)"
    return TrigkitError(f"{path} has no {what} {name!r}; available columns: {avail}")


def _arrow_to_numpy(col: Any) -> np.ndarray:
    """A pyarrow (chunked) array as numpy: numbers (nulls -> NaN), booleans, or str objects."""
    t = col.type
    if pa.types.is_boolean(t):
        if col.null_count:
            return col.cast(pa.float64()).to_numpy()
        return col.to_numpy().astype(np.bool_)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        if col.null_count or pa.types.is_decimal(t):
            return col.cast(pa.float64()).to_numpy()
        return np.asarray(col.to_numpy())
    if pa.types.is_null(t):
        return np.full(len(col), np.nan)
    return np.asarray(col.to_pylist(), dtype=object)


def _csv_columns(path: Path) -> list[str]:

    try:
        with pcsv.open_csv(path) as reader:
            return list(reader.schema.names)
    except pa.ArrowInvalid as err:
        raise _arrow_error(path, err) from None


def _arrow_error(path: Path, err: Exception) -> TrigkitError:
    text = str(err)
    if "Empty CSV file" in text:
        return TrigkitError(f"{path} is empty: no header line with column names")
    return TrigkitError(f"{path} is not a readable table ({text.splitlines()[0]})")


def _read_csv(path: Path, names: Sequence[str]) -> tuple[dict[str, np.ndarray], int]:

    as_text: dict[str, Any] = {}
    pattern = re.compile(r"column #(\d+)")
    all_names = _csv_columns(path)
    for _ in range(len(names) + 1):
        opts = pcsv.ConvertOptions(include_columns=list(names), column_types=as_text)
        try:
            table = pcsv.read_csv(path, convert_options=opts)
            break
        except pa.ArrowInvalid as err:
            # A value that does not fit the type inferred from the first block: read that
            # column as text so that the caller can report the offending value and its row.
            m = pattern.search(str(err))
            if m is None or "conversion error" not in str(err):
                raise _arrow_error(path, err) from None
            as_text[all_names[int(m.group(1))]] = pa.string()
    else:  # pragma: no cover - every retry converts one more column to text
        raise TrigkitError(f"{path}: could not read columns {list(names)}")
    return {n: _arrow_to_numpy(table.column(n)) for n in names}, table.num_rows


def _parquet_columns(path: Path) -> list[str]:

    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowInvalid, OSError) as err:
        raise _arrow_error(path, err) from None


def _read_parquet(path: Path, names: Sequence[str]) -> tuple[dict[str, np.ndarray], int]:

    try:
        table = pq.read_table(path, columns=list(names))
    except (pa.ArrowInvalid, OSError) as err:
        raise _arrow_error(path, err) from None
    return {n: _arrow_to_numpy(table.column(n)) for n in names}, table.num_rows


def _root_columns(path: Path) -> list[str]:
    """Branches with one value per entry (fixed-size array branches are not columns)."""
    return [k for k, shape in rootio.branches(path).items() if shape == ()]


def _read_root(path: Path, names: Sequence[str]) -> tuple[dict[str, np.ndarray], int]:
    available = _root_columns(path)
    missing = [n for n in names if n not in available]
    if missing:
        raise _missing(path, missing[0], available, "branch")
    return rootio.read_branches(path, list(names))


def _h5_open(path: Path):
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise TrigkitError(f"{path} is not a readable HDF5 file ({err})") from None


def _h5_layout(f: Any) -> tuple[Any, dict[str, tuple[str, str | None]]]:
    """The group holding the table and its columns: name -> (dataset name, compound field)."""

    def columns(group: Any) -> dict[str, tuple[str, str | None]]:
        cols: dict[str, tuple[str, str | None]] = {}
        for key, obj in group.items():
            if not isinstance(obj, h5py.Dataset) or obj.ndim != 1:
                continue
            if obj.dtype.names:
                for fname in obj.dtype.names:
                    cols.setdefault(fname, (key, fname))
            else:
                cols.setdefault(key, (key, None))
        return cols

    cols = columns(f)
    if cols:
        return f, cols
    groups = [k for k, v in f.items() if isinstance(v, h5py.Group)]
    if H5_TABLE_GROUP in groups:
        groups.remove(H5_TABLE_GROUP)
        groups.insert(0, H5_TABLE_GROUP)
    if groups:
        g = f[groups[0]]
        return g, columns(g)
    return f, {}


def _decode(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind in "SO":
        return np.asarray(
            [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in arr.tolist()],
            dtype=object,
        )
    if arr.dtype.kind == "U":
        return arr.astype(object)
    return arr


def _read_h5(path: Path, names: Sequence[str]) -> tuple[dict[str, np.ndarray], int]:
    with _h5_open(path) as f:
        group, cols = _h5_layout(f)
        out = {}
        for n in names:
            key, fname = cols[n]
            ds = group[key]
            arr = ds[()] if fname is None else ds.fields(fname)[()]
            out[n] = _decode(np.asarray(arr))
        lengths = {n: len(a) for n, a in out.items()}
        if len(set(lengths.values())) > 1:
            desc = ", ".join(f"{n}: {k}" for n, k in lengths.items())
            raise TrigkitError(
                f"{path}: columns have different lengths ({desc}); every column of a table "
                "needs one value per event"
            )
    return out, next(iter(lengths.values()), 0)


def _h5_label_names(path: Path, label: str) -> tuple[str, ...]:
    with _h5_open(path) as f:
        group, cols = _h5_layout(f)
        key, _ = cols[label]
        raw = group[key].attrs.get("label_names")
        if raw is None and label == "label":
            raw = group.attrs.get("label_names", f.attrs.get("label_names"))
    if raw is None:
        return ()
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        names = json.loads(raw) if isinstance(raw, str) else [
            v.decode() if isinstance(v, bytes) else str(v) for v in np.ravel(raw)]
    except json.JSONDecodeError:
        raise TrigkitError(
            f"{path}: attribute label_names is not a JSON list of class names: {raw!r}"
        ) from None
    if not isinstance(names, list):
        raise TrigkitError(f"{path}: attribute label_names must be a list, got {names!r}")
    return tuple(str(n) for n in names)


def columns_of(path: str | os.PathLike) -> list[str]:
    """Column names of a CSV, Parquet, ROOT or HDF5 table, in file order."""
    p, fmt = _check_file(path)
    if fmt == "csv":
        return _csv_columns(p)
    if fmt == "parquet":
        return _parquet_columns(p)
    if fmt == "root":
        return _root_columns(p)
    with _h5_open(p) as f:
        return list(_h5_layout(f)[1])


# ---- checks --------------------------------------------------------------------------------


def _first_non_numeric(arr: np.ndarray) -> tuple[int, Any, bool]:
    """Row and value of the first entry that is not a number (else the first entry), and
    whether such an entry exists (False: numbers stored as text)."""
    for i, v in enumerate(arr.tolist()):
        if v is None:
            continue
        try:
            float(v)
        except (TypeError, ValueError):
            return i, v, True
    return 0, (arr[0] if len(arr) else None), False


def _is_numeric(arr: np.ndarray) -> bool:
    return arr.dtype.kind in "biuf"


def _numeric(path: Path, name: str, arr: np.ndarray, role: str) -> np.ndarray:
    if not _is_numeric(arr):
        row, value, found = _first_non_numeric(arr)
        what = "non-numeric values" if found else "numbers stored as text"
        raise TrigkitError(
            f"{role} column {name!r} of {path} holds {what} (e.g. {value!r} in row {row}); "
            f"{role}s must be numbers: fix the file or choose another column"
        )
    return arr.astype(np.float64)


def _check_finite(path: Path, name: str, values: np.ndarray, nan_ok: bool) -> None:
    bad = np.isinf(values) if nan_ok else ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad)
        what = "inf" if nan_ok else "NaN/inf (or missing)"
        hint = ("NaN is allowed in this column but inf is not; replace inf values" if nan_ok else
                "clean the file, or allow NaN in this column (allow_nan / data.fill_nan)")
        raise TrigkitError(
            f"feature column {name!r} of {path} has {len(rows)} {what} value(s), first in row "
            f"{rows[0]} (value {float(values[rows[0]]):g}); {hint}"
        )


def _labels(path: Path, name: str, arr: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    if arr.dtype.kind == "b":
        return arr.astype(np.int64), ()
    if arr.dtype.kind == "O":
        missing = np.flatnonzero([v is None for v in arr.tolist()])
        if len(missing):
            raise TrigkitError(
                f"label column {name!r} of {path} has {len(missing)} missing value(s), first in "
                f"row {missing[0]}; every event needs a label"
            )
        text = np.asarray([str(v) for v in arr.tolist()])
        names, codes = np.unique(text, return_inverse=True)
        return codes.astype(np.int64), tuple(str(n) for n in names)
    if arr.dtype.kind in "iu":
        values = arr.astype(np.int64)
    else:
        f = arr.astype(np.float64)
        nan = np.flatnonzero(np.isnan(f))
        if len(nan):
            raise TrigkitError(
                f"label column {name!r} of {path} has {len(nan)} missing/NaN value(s), first "
                f"in row {nan[0]}; every event needs a label"
            )
        bad = np.flatnonzero(~np.isfinite(f) | (f != np.round(f)))
        if len(bad):
            raise TrigkitError(
                f"label column {name!r} of {path} holds non-integer value "
                f"{float(f[bad[0]]):g} (row {bad[0]}, {len(bad)} such rows); labels must be "
                "integer class indices or class-name strings"
            )
        values = f.astype(np.int64)
    neg = np.flatnonzero(values < 0)
    if len(neg):
        raise TrigkitError(
            f"label column {name!r} of {path} holds negative label {values[neg[0]]} (row "
            f"{neg[0]}); class indices must be 0, 1, 2, ..."
        )
    return values, ()


def _unique_names(kind: str, names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        raise TrigkitError(f"read_table: {kind} must be a list of column names, not {names!r}")
    names = tuple(names)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TrigkitError(f"read_table: {kind} names column {dup[0]!r} more than once")
    return names


def read_table(
    path: str | os.PathLike,
    features: Sequence[str],
    label: str | None = None,
    extra: Sequence[str] = (),
    allow_nan: Sequence[str] = (),
) -> Table:
    """Read feature, label and extra columns of a CSV, Parquet or HDF5 table.

    Features become one (N, F) float32 matrix; NaN, inf and missing values in a feature are
    errors unless the column is listed in ``allow_nan`` (which permits NaN and missing values,
    never inf). The label must be integer-like (bools, integers, integral floats >= 0) or
    strings, which are mapped to 0..K-1 in sorted order (``label_names``). Every problem raises
    TrigkitError naming the file and the column.
    """
    p, fmt = _check_file(path)
    features = _unique_names("features", features)
    extra = _unique_names("extra", extra)
    allow = _unique_names("allow_nan", allow_nan)
    if not features:
        raise TrigkitError("read_table needs at least one feature column")
    stray = [n for n in allow if n not in features]
    if stray:
        raise TrigkitError(
            f"allow_nan names {stray[0]!r}, which is not one of the feature columns "
            f"({', '.join(features)})"
        )
    available = columns_of(p)
    if not available:
        raise TrigkitError(f"{p} holds no table columns (1-D datasets or header names)")
    wanted = list(dict.fromkeys([*features, *([label] if label else []), *extra]))
    for n in wanted:
        if n not in available:
            role = ("feature column" if n in features else
                    "label column" if n == label else "extra column")
            raise _missing(p, n, available, role)
    reader = {"csv": _read_csv, "parquet": _read_parquet, "hdf5": _read_h5,
              "root": _read_root}[fmt]
    raw, n_rows = reader(p, wanted)
    if n_rows == 0:
        raise TrigkitError(f"{p} has no rows (only column names); it holds no events")

    x = np.empty((n_rows, len(features)), dtype=np.float32)
    for j, n in enumerate(features):
        values = _numeric(p, n, raw[n], "feature")
        _check_finite(p, n, values, n in allow)
        x[:, j] = values
        overflow = np.isinf(x[:, j]) & np.isfinite(values)
        if overflow.any():
            row = int(np.flatnonzero(overflow)[0])
            raise TrigkitError(
                f"feature column {n!r} of {p} has value {float(values[row]):g} (row {row}) "
                "beyond the float32 range; rescale the column"
            )
    y, names = (None, ())
    if label:
        y, names = _labels(p, label, raw[label])
        if not names and fmt == "hdf5":
            names = _h5_label_names(p, label)
            if names and y.max() >= len(names):
                raise TrigkitError(
                    f"{p}: label_names lists {len(names)} classes but column {label!r} goes "
                    f"up to {int(y.max())}; fix the label_names attribute"
                )
    kept = {n: (raw[n] if raw[n].dtype.kind != "O" else raw[n].astype(str)) for n in extra}
    return Table(x, features, y, names, kept)


# ---- writer --------------------------------------------------------------------------------


def write_table_h5(
    path: str | os.PathLike,
    columns: dict[str, np.ndarray],
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write equally long 1-D columns as one HDF5 dataset each at the root (atomically).

    Numeric and boolean columns keep their dtype; string columns are stored as UTF-8. Each
    attribute is stored as a JSON string (e.g. ``label_names``: ``["sm", "dmsimp_v_500"]``),
    which :func:`read_table` and the training data loader understand. Column order is kept.
    """

    out = check_output_path(path, overwrite=overwrite)
    if not columns:
        raise TrigkitError(f"write_table_h5({out}): no columns to write")
    arrays: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise TrigkitError(f"write_table_h5: invalid column name {name!r} (no '/', not empty)")
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise TrigkitError(
                f"write_table_h5: column {name!r} has shape {arr.shape}; columns must be 1-D"
            )
        arrays[name] = arr
    lengths = {n: len(a) for n, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{n}: {k}" for n, k in lengths.items())
        raise TrigkitError(f"write_table_h5: columns have different lengths ({desc})")
    encoded = {}
    for key, value in (attrs or {}).items():
        try:
            encoded[key] = json.dumps(value, sort_keys=True)
        except TypeError as err:
            raise TrigkitError(
                f"write_table_h5: attribute {key!r} is not JSON-serialisable ({err})"
            ) from None
    with atomic_path(out, overwrite=overwrite) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            for key, value in encoded.items():
                f.attrs[key] = value
            for name, arr in arrays.items():
                if arr.dtype.kind in "UO":
                    data = np.asarray([str(v) for v in arr.tolist()], dtype=object)
                    f.create_dataset(name, data=data, dtype=h5py.string_dtype(),
                                     track_times=False)
                elif arr.dtype.kind in "biuf":
                    f.create_dataset(name, data=arr, track_times=False)
                else:
                    raise TrigkitError(
                        f"write_table_h5: column {name!r} has unsupported dtype {arr.dtype}; "
                        "use numbers, booleans or strings"
                    )
    return out


def write_table(path: str | os.PathLike, columns: dict[str, np.ndarray],
                overwrite: bool = False) -> Path:
    """Write equally long 1-D columns as CSV or Parquet (by the suffix), atomically."""
    out = check_output_path(path, overwrite=overwrite)
    fmt = _format_of(out)
    if fmt not in ("csv", "parquet"):
        raise TrigkitError(f"{out}: write_table writes .csv or .parquet")
    table = pa.table({k: np.asarray(v) for k, v in columns.items()})
    with atomic_path(out, overwrite=overwrite) as tmp:
        if fmt == "csv":
            pcsv.write_csv(table, tmp)
        else:
            pq.write_table(table, tmp)
    return out
