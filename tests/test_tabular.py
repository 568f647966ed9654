import math

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trigkit.core.errors import TrigkitError
from trigkit.offline.tabular import SUFFIXES, Table, columns_of, read_table, write_table_h5

FORMATS = ("csv", "parquet", "h5")


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return str(v)


def write(fmt: str, path, columns: dict) -> object:
    """Write ``columns`` (name -> list) in the given format; returns the file path."""
    path = path.with_suffix("." + fmt)
    if fmt == "csv":
        names = list(columns)
        rows = zip(*columns.values(), strict=True)
        lines = [",".join(names)] + [",".join(_csv_value(v) for v in row) for row in rows]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "parquet":
        pq.write_table(pa.table({k: pa.array(v) for k, v in columns.items()}), path)
    else:
        write_table_h5(path, {k: np.asarray(v) for k, v in columns.items()})
    return path


def good_columns(n: int = 8) -> dict:
    rng = np.random.default_rng(0)
    return {
        "pt": [float(v) for v in rng.uniform(1, 5, n)],
        "eta": [float(v) for v in rng.uniform(-2, 2, n)],
        "n_hits": [int(v) for v in rng.integers(0, 30, n)],
        "label": [int(v) for v in rng.integers(0, 3, n)],
        "name": [f"ev{i}" for i in range(n)],
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_roundtrip_features_label_and_extra(fmt, tmp_path):
    cols = good_columns()
    p = write(fmt, tmp_path / "t", cols)
    t = read_table(p, ["eta", "pt", "n_hits"], "label", extra=["pt", "name"])
    assert isinstance(t, Table) and len(t) == 8
    assert t.features.dtype == np.float32 and t.features.shape == (8, 3)
    assert t.feature_names == ("eta", "pt", "n_hits")
    np.testing.assert_allclose(t.features[:, 0], cols["eta"], rtol=1e-6)
    np.testing.assert_array_equal(t.features[:, 2], cols["n_hits"])
    assert t.label.dtype == np.int64
    np.testing.assert_array_equal(t.label, cols["label"])
    np.testing.assert_allclose(t.extra["pt"], cols["pt"])
    assert list(t.extra["name"]) == cols["name"]
    assert columns_of(p) == list(cols)


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_column_lists_available(fmt, tmp_path):
    p = write(fmt, tmp_path / "t", good_columns())
    with pytest.raises(TrigkitError, match=r"no feature column 'met'.*available columns: pt, eta"):
        read_table(p, ["pt", "met"], "label")
    with pytest.raises(TrigkitError, match=r"no label column 'y'"):
        read_table(p, ["pt"], "y")
    with pytest.raises(TrigkitError, match=r"no extra column 'truth'") as err:
        read_table(p, ["pt"], extra=["truth"])
    assert str(p) in str(err.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_nan_in_feature_names_column_count_and_first_row(fmt, tmp_path):
    cols = good_columns()
    cols["eta"][3] = float("nan")
    cols["eta"][6] = float("nan")
    p = write(fmt, tmp_path / "t", cols)
    with pytest.raises(TrigkitError, match=r"'eta'.*2 NaN/inf.*first in row 3") as err:
        read_table(p, ["pt", "eta"], "label")
    assert str(p) in str(err.value) and "allow_nan" in str(err.value)
    t = read_table(p, ["pt", "eta"], "label", allow_nan=["eta"])
    assert np.isnan(t.features[[3, 6], 1]).all() and np.isfinite(t.features[:, 0]).all()
    with pytest.raises(TrigkitError, match="not one of the feature columns"):
        read_table(p, ["pt", "eta"], "label", allow_nan=["label"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_inf_is_an_error_even_where_nan_is_allowed(fmt, tmp_path):
    cols = good_columns()
    cols["pt"][5] = float("inf")
    p = write(fmt, tmp_path / "t", cols)
    with pytest.raises(TrigkitError, match=r"'pt'.*1 inf value.*row 5"):
        read_table(p, ["pt"], allow_nan=["pt"])
    with pytest.raises(TrigkitError, match=r"'pt'.*NaN/inf"):
        read_table(p, ["pt"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_string_value_in_feature_gives_example(fmt, tmp_path):
    cols = good_columns()
    cols["eta"] = [str(v) for v in cols["eta"]]
    cols["eta"][4] = "abc"
    p = write(fmt, tmp_path / "t", cols)
    with pytest.raises(TrigkitError, match=r"feature column 'eta'.*non-numeric.*'abc' in row 4"):
        read_table(p, ["pt", "eta"], "label")
    with pytest.raises(TrigkitError, match=r"feature column 'name'.*non-numeric.*'ev0'"):
        read_table(p, ["name"])


def test_csv_non_numeric_value_after_the_first_block(tmp_path):
    n = 120_000  # more than pyarrow's first 1 MB block, so the type is inferred as a number
    lines = ["a,b"] + [f"{i}.5,{i}" for i in range(n)] + ["x1,7"]
    p = tmp_path / "big.csv"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrigkitError, match=rf"'a'.*'x1' in row {n}"):
        read_table(p, ["a", "b"])
    assert len(read_table(p, ["b"])) == n + 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_label_checks(fmt, tmp_path):
    cols = good_columns()
    cols["label"] = [0.0, 1.0, 2.0, 1.0, 0.5, 1.0, 0.0, 2.0]
    p = write(fmt, tmp_path / "t", cols)
    with pytest.raises(TrigkitError, match=r"label column 'label'.*non-integer value 0.5 \(row 4"):
        read_table(p, ["pt"], "label")
    cols["label"][4] = 1.0
    p = write(fmt, tmp_path / "t2", cols)
    t = read_table(p, ["pt"], "label")
    assert t.label.dtype == np.int64 and t.label.tolist() == [0, 1, 2, 1, 1, 1, 0, 2]
    cols["label"][2] = -1.0
    p = write(fmt, tmp_path / "t3", cols)
    with pytest.raises(TrigkitError, match="negative label -1"):
        read_table(p, ["pt"], "label")
    cols["label"][2] = float("nan")
    p = write(fmt, tmp_path / "t4", cols)
    with pytest.raises(TrigkitError, match=r"'label'.*missing/NaN.*row 2"):
        read_table(p, ["pt"], "label")


@pytest.mark.parametrize("fmt", FORMATS)
def test_string_labels_map_to_sorted_indices(fmt, tmp_path):
    cols = good_columns(6)
    cols["kind"] = ["qcd", "top", "qcd", "dark", "top", "qcd"]
    p = write(fmt, tmp_path / "t", cols)
    t = read_table(p, ["pt"], "kind")
    assert t.label_names == ("dark", "qcd", "top")
    assert t.label.tolist() == [1, 2, 1, 0, 2, 1]


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_files(fmt, tmp_path):
    p = tmp_path / f"zero.{fmt}"
    p.write_bytes(b"")
    with pytest.raises(TrigkitError, match="empty"):
        read_table(p, ["pt"])
    cols = {"pt": [], "label": []}
    if fmt == "csv":
        p = tmp_path / "header.csv"
        p.write_text("pt,label\n")
    elif fmt == "parquet":
        p = tmp_path / "rows.parquet"
        pq.write_table(pa.table({k: pa.array(v, pa.float64()) for k, v in cols.items()}), p)
    else:
        p = write_table_h5(tmp_path / "rows.h5", {k: np.zeros(0) for k in cols})
    with pytest.raises(TrigkitError, match="no rows"):
        read_table(p, ["pt"], "label")


def test_h5_without_columns(tmp_path):
    p = tmp_path / "img.h5"
    with h5py.File(p, "w") as f:
        f["images"] = np.zeros((3, 4, 4))
    with pytest.raises(TrigkitError, match="holds no table columns"):
        read_table(p, ["pt"])


def test_unknown_suffix_and_missing_file(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(TrigkitError, match=r"unknown table suffix '.txt'; supported: .csv") as e:
        read_table(p, ["a"])
    assert all(s in str(e.value) for s in SUFFIXES)
    with pytest.raises(TrigkitError, match="not found"):
        read_table(tmp_path / "nope.parquet", ["a"])


def test_not_a_table_file(tmp_path):
    for suffix in (".parquet", ".h5"):
        p = tmp_path / f"junk{suffix}"
        p.write_text("this is not binary\n")
        with pytest.raises(TrigkitError, match="not a readable"):
            read_table(p, ["a"])


def test_duplicate_and_empty_feature_lists(tmp_path):
    p = write("csv", tmp_path / "t", good_columns())
    with pytest.raises(TrigkitError, match="more than once"):
        read_table(p, ["pt", "pt"])
    with pytest.raises(TrigkitError, match="at least one feature"):
        read_table(p, [])
    with pytest.raises(TrigkitError, match="list of column names"):
        read_table(p, "pt")


def test_h5_group_and_compound_layouts(tmp_path):
    rec = np.zeros(5, dtype=[("pt", "f8"), ("eta", "f4"), ("label", "i4")])
    rec["pt"] = np.arange(5) + 1.0
    rec["label"] = [0, 1, 0, 1, 1]
    p1 = tmp_path / "compound.h5"
    with h5py.File(p1, "w") as f:
        f["events"] = rec
        f["images"] = np.zeros((5, 2, 2))  # not a column
    assert columns_of(p1) == ["pt", "eta", "label"]
    t = read_table(p1, ["pt", "eta"], "label")
    np.testing.assert_array_equal(t.features[:, 0], rec["pt"])
    assert t.label.tolist() == [0, 1, 0, 1, 1]

    p2 = tmp_path / "group.h5"
    with h5py.File(p2, "w") as f:
        f["aaa/x"] = np.ones(3)  # the group named "table" wins over the first group
        f["table/pt"] = np.arange(3.0)
        f["table/label"] = np.array([b"b", b"a", b"b"])
    assert columns_of(p2) == ["label", "pt"]
    t = read_table(p2, ["pt"], "label")
    assert t.label.tolist() == [1, 0, 1] and t.label_names == ("a", "b")

    p3 = tmp_path / "ragged.h5"
    with h5py.File(p3, "w") as f:
        f["pt"] = np.arange(3.0)
        f["eta"] = np.arange(4.0)
    with pytest.raises(TrigkitError, match="different lengths"):
        read_table(p3, ["pt", "eta"])


def test_write_table_h5_attrs_label_names_and_atomicity(tmp_path):
    p = tmp_path / "w.h5"
    cols = {"x": np.arange(4, dtype=np.float32), "label": np.array([0, 1, 1, 0]),
            "flag": np.array([True, False, True, True]), "tag": np.array(["a", "b", "c", "d"])}
    out = write_table_h5(p, cols, {"label_names": ["bkg", "sig"], "seed": 3})
    assert out == p and [x.name for x in tmp_path.iterdir()] == ["w.h5"]
    with h5py.File(p) as f:
        assert list(f) == ["x", "label", "flag", "tag"]
        assert f.attrs["label_names"] == '["bkg", "sig"]'
    t = read_table(p, ["x", "flag"], "label", extra=["tag"])
    assert t.label_names == ("bkg", "sig")
    assert t.features[:, 1].tolist() == [1, 0, 1, 1]
    assert list(t.extra["tag"]) == ["a", "b", "c", "d"]
    with pytest.raises(TrigkitError, match="exists"):
        write_table_h5(p, cols)
    with pytest.raises(TrigkitError, match="JSON"):
        write_table_h5(p, cols, {"bad": object()}, overwrite=True)
    with pytest.raises(TrigkitError, match="different lengths"):
        write_table_h5(p, {"a": np.zeros(2), "b": np.zeros(3)}, overwrite=True)
    with pytest.raises(TrigkitError, match="1-D"):
        write_table_h5(p, {"a": np.zeros((2, 2))}, overwrite=True)
    assert read_table(p, ["x"]).features.shape == (4, 1)  # failed writes left the file alone


def test_label_names_attribute_must_cover_labels(tmp_path):
    p = write_table_h5(tmp_path / "w.h5", {"x": np.zeros(3), "label": np.array([0, 1, 2])},
                       {"label_names": ["a", "b"]})
    with pytest.raises(TrigkitError, match="label_names lists 2 classes"):
        read_table(p, ["x"], "label")
