"""Fuzz: damaged event, jet-image, table and vector files fed to every command that reads them.

Each corruption (truncation, flipped bytes, garbage, wrong shapes or dtypes, missing datasets or
columns, values out of range) is first judged by an oracle written here from the file formats of
sw/docs/files.md, independently of trigkit's readers. For every file the oracle calls invalid, the
command must exit 2 with one line on stderr (no traceback) and leave the working tree exactly as
it was (no partial output). Corruptions the oracle cannot tell from valid data (a flipped bit in
a float) are skipped; at least 200 invalid cases run.
"""

import contextlib
import csv
import io
import json
import math
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from test_offline_core import write_jet_file
from trigkit.cli import main
from trigkit.core.card import load_card
from trigkit.firmware.export import run_export
from trigkit.l0.baseline import BaselineConfig, Roads
from trigkit.l0.detector import SimConfig
from trigkit.l0.simulate import write_h5
from trigkit.learn.models import build_model

RNG = np.random.default_rng(20261201)
MIN_INVALID = 200


def run_cli(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    argv, sys.argv = sys.argv, ["trigkit", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, err.getvalue()


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


# --- oracles (the formats, as documented) ----------------------------------------------------


def events_valid(path: Path, need_label: bool) -> bool:
    try:
        with h5py.File(path, "r") as f:
            arrays = {k: f[k][()] for k in f}
            config = f.attrs.get("config")
            if config is not None:
                SimConfig.from_dict(yaml.safe_load(config))
    except Exception:  # noqa: BLE001 - unreadable in any way: invalid
        return False
    hits = arrays.get("hits")
    if hits is None or hits.ndim != 3 or hits.shape[1:] != (9, 384):
        return False
    if hits.dtype not in (np.uint8, np.bool_) or (hits.size and hits.max() > 1):
        return False
    n = len(hits)
    if any(a.ndim >= 1 and len(a) != n for a in arrays.values()):
        return False
    label = arrays.get("label")
    if label is None:
        return not need_label
    return (label.ndim == 1 and label.dtype.kind in "iub"
            and bool(np.all((label >= 0) & (label <= 3))))


def jets_valid(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            arrays = {k: f[k][()] for k in f}
            names = json.loads(f.attrs["label_names"])
    except Exception:  # noqa: BLE001
        return False
    images, label = arrays.get("images"), arrays.get("label")
    if images is None or label is None or images.shape[1:] != (2, 8, 8):
        return False
    if images.dtype.kind != "f" or not np.all(np.isfinite(images)) or label.ndim != 1:
        return False
    if not isinstance(names, list) or label.dtype.kind not in "iu" or len(label) != len(images):
        return False
    if any(a.ndim == 1 and len(a) != len(images) for a in arrays.values()):
        return False
    return bool(np.all((label >= 0) & (label < len(names))))


def table_valid(path: Path) -> bool:
    try:
        if path.suffix == ".csv":
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
            header, body = rows[0], rows[1:]
            cols = {name: [r[i] for r in body] for i, name in enumerate(header)}
            if any(len(r) != len(header) for r in body):
                return False
        else:
            cols = pq.read_table(path).to_pydict()
        feats = [[float(v) for v in cols[c]] for c in ("f0", "f1", "f2")]
        labels = [float(v) for v in cols["label"]]
    except Exception:  # noqa: BLE001
        return False
    if not labels or any(not math.isfinite(v) for col in feats for v in col):
        return False
    return all(v == int(v) and v >= 0 for v in labels)


def vectors_valid(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as npz:
            v = {k: npz[k] for k in ("x", "y_int", "y_exp", "y")}
    except Exception:  # noqa: BLE001
        return False
    x, y_int, y_exp, y = v["x"], v["y_int"], v["y_exp"], v["y"]
    if x.ndim < 2 or not len(x) or len(y_int) != len(x) or y.shape != y_int.shape:
        return False
    if x.dtype.kind not in "iub" or y_int.dtype.kind not in "iu" or y_exp.dtype.kind not in "iu":
        return False
    return bool(np.array_equal(y_int * 2.0 ** y_exp.astype(np.float64), y))


# --- corruptions ------------------------------------------------------------------------------


def byte_corruptions(data: bytes) -> list[bytes]:
    out = [b"", RNG.bytes(len(data))]
    for frac in RNG.uniform(0.05, 0.98, 10):
        out.append(data[:int(len(data) * frac)])
    for k in (1, 4, 32, 256):
        for region in (min(len(data), 4096), len(data)):
            b = bytearray(data)
            for pos in RNG.integers(0, region, k):
                b[pos] ^= int(RNG.integers(1, 256))
            out.append(bytes(b))
    return out


def event_variants(src: Path, tmp: Path) -> list[Path]:
    """Damaged copies of an event file: bytes, then structure."""
    paths = []
    for i, data in enumerate(byte_corruptions(src.read_bytes())):
        p = tmp / f"bytes{i}.h5"
        p.write_bytes(data)
        paths.append(p)
    with h5py.File(src, "r") as f:
        good = {k: f[k][()] for k in f}
        attrs = dict(f.attrs)
    hits, label = good["hits"], good["label"]
    changes = [
        {"hits": hits[:, :8]}, {"hits": hits[:, :, :383]}, {"hits": hits[:, 0]},
        {"hits": hits.astype(np.float32)}, {"hits": hits.astype(np.int16) * 2},
        {"hits": None}, {"label": None}, {"label": label + 7}, {"label": label - 1},
        {"label": label.astype(np.float64) + 0.5}, {"label": label[:-3]},
        {"pt": good["pt"][:5]}, {"label": np.stack([label, label], 1)},
        {"__config__": "detector: [unclosed"}, {"__config__": "detector: {n_layers: -3}"},
    ]
    for i, change in enumerate(changes):
        p = tmp / f"struct{i}.h5"
        with h5py.File(p, "w") as g:
            for k, v in attrs.items():
                g.attrs[k] = v
            if "__config__" in change:
                g.attrs["config"] = change["__config__"]
            for k, v in good.items():
                new = change.get(k, v)
                if new is not None:
                    g.create_dataset(k, data=new)
        paths.append(p)
    return paths


def jet_variants(src: Path, tmp: Path) -> list[Path]:
    paths = []
    for i, data in enumerate(byte_corruptions(src.read_bytes())):
        p = tmp / f"j{i}.h5"
        p.write_bytes(data)
        paths.append(p)
    with h5py.File(src, "r") as f:
        good = {k: f[k][()] for k in f}
        attrs = dict(f.attrs)
    changes = [{"images": good["images"][:, :1]}, {"images": good["images"] * np.nan},
               {"label": good["label"][:-2]}, {"label": good["label"] + 9},
               {"jet_mass": good["jet_mass"][:3]}, {"__names__": "[unclosed"}]
    for i, change in enumerate(changes):
        p = tmp / f"js{i}.h5"
        with h5py.File(p, "w") as g:
            for k, v in attrs.items():
                g.attrs[k] = v
            if "__names__" in change:
                g.attrs["label_names"] = change["__names__"]
            for k, v in good.items():
                g.create_dataset(k, data=change.get(k, v))
        paths.append(p)
    return paths


def table_variants(csv_src: Path, pq_src: Path, tmp: Path) -> list[Path]:
    paths = []
    for src in (csv_src, pq_src):
        for i, data in enumerate(byte_corruptions(src.read_bytes())):
            p = tmp / f"t{i}{src.suffix}"
            p.write_bytes(data)
            paths.append(p)
    lines = csv_src.read_text().splitlines()
    edits = [
        lines[:1],                                                  # no rows
        [lines[0].replace("f1", "g1"), *lines[1:]],                 # a feature column missing
        [lines[0], *[ln.replace(",", ";") for ln in lines[1:]]],    # wrong delimiter
        [lines[0], "x,y,z,1", *lines[2:]],                          # non-numeric cells
        [lines[0], "nan,1,2,0", *lines[2:]],                        # NaN feature
        [lines[0], "1,2,3,0.5", *lines[2:]],                        # fractional label
        [lines[0], "1,2,3,-1", *lines[2:]],                         # negative label
        [lines[0], "1,2,3", *lines[2:]],                            # short row
    ]
    for i, rows in enumerate(edits):
        p = tmp / f"edit{i}.csv"
        p.write_text("\n".join(rows) + "\n")
        paths.append(p)
    return paths


def vector_variants(src: Path, tmp: Path) -> list[Path]:
    paths = []
    for i, data in enumerate(byte_corruptions(src.read_bytes())):
        p = tmp / f"v{i}.npz"
        p.write_bytes(data)
        paths.append(p)
    with np.load(src) as npz:
        good = {k: npz[k] for k in npz.files}
    changes = [{"x": None}, {"y_int": None}, {"x": good["x"].astype(np.float32) + 0.5},
               {"y": good["y"] + 1.0}, {"y_int": good["y_int"][:-1]}, {"x": good["x"][:, 0]},
               {"y_exp": np.float64(0.5)}, {"y_int": good["y_int"].astype(np.float64)}]
    for i, change in enumerate(changes):
        p = tmp / f"vs{i}.npz"
        arrays = {k: change.get(k, v) for k, v in good.items()}
        np.savez(p, **{k: v for k, v in arrays.items() if v is not None})
        paths.append(p)
    return paths


# --- the project ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project with a hit-image card whose (untrained) ternary model is exported, a table
    card, a valid event file, calibrated-looking roads and valid tables."""
    root = tmp_path_factory.mktemp("fuzz")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        (root / "models").mkdir()
        hits_card = {
            "name": "tinyh", "task": "classification",
            "data": {"events": 600, "seed": 3, "split": [0.6, 0.2, 0.2]},
            "architecture": {"eta_pool": 8, "channels": [4], "pool": [1, 2], "dense": [8]},
            "quant": {"weights": "ternary"},
            "training": {"epochs": 1, "batch_size": 64, "threads": 1},
        }
        table_card = {
            "name": "tab", "task": "classification",
            "data": {"source": "unused.csv", "features": ["f0", "f1", "f2"],
                     "classes": ["class0", "class1"], "input_shape": [3]},
            "architecture": {"kind": "mlp", "dense": [4]},
            "training": {"epochs": 1, "batch_size": 32, "threads": 1},
        }
        write_jet_file(root / "jets.h5", n=400)
        jet_card = {
            "name": "jet", "task": "classification",
            "data": {"source": "jets.h5", "format": "jet_images", "input_shape": [2, 8, 8],
                     "classes": ["qcd", "top"]},
            "architecture": {"kind": "cnn", "eta_pool": 1, "channels": [2], "padding": "same",
                             "pool": [2, 2], "dense": [4]},
            "training": {"epochs": 1, "batch_size": 64, "threads": 1},
        }
        for card in (hits_card, table_card, jet_card):
            (root / "models" / f"{card['name']}.yaml").write_text(yaml.safe_dump(card))
        card = load_card("tinyh")
        torch.manual_seed(0)
        (root / "build" / "tinyh").mkdir(parents=True)
        run_export(card, build_model(card).eval(), root / "build" / "tinyh", n_vectors=16)
        write_h5(root / "ev.h5", SimConfig(), "mixed", 48, 5)
        Roads(BaselineConfig(mode="high"), np.full((8, 9), 3, np.int64)).save(root / "roads.json")
        rng = np.random.default_rng(1)
        x, y = rng.normal(size=(120, 3)), rng.integers(0, 2, 120)
        with open(root / "t.csv", "w") as fh:
            fh.write("f0,f1,f2,label\n" + "".join(f"{a:.5f},{b:.5f},{c:.5f},{d}\n"
                                                  for (a, b, c), d in zip(x, y, strict=True)))
        pq.write_table(pa.table({"f0": x[:, 0], "f1": x[:, 1], "f2": x[:, 2], "label": y}),
                       root / "t.parquet")
        yield root
    finally:
        os.chdir(cwd)


def check_refused(root: Path, args: tuple[str, ...], keep: set[str]) -> None:
    before = {k: v for k, v in tree(root).items() if k not in keep}
    code, err = run_cli(*args)
    assert code == 2, (args, code, err)
    assert err.startswith("trigkit: error: ") and err.count("\n") == 1, (args, err)
    assert "Traceback" not in err
    after = {k: v for k, v in tree(root).items() if k not in keep}
    assert after == before, (args, set(after) ^ set(before))


def test_damaged_files_are_refused_by_every_reading_command(project):
    root = project
    bad_dir = root / "bad"
    bad_dir.mkdir(exist_ok=True)
    keep = {str(p.relative_to(root)) for p in bad_dir.rglob("*")}
    cases: list[tuple[str, tuple[str, ...], Callable[[Path], bool], Path]] = []

    def event_commands(f: str) -> list[tuple[tuple[str, ...], bool]]:
        return [(("show", f, "--out", "out.png"), False),
                (("baseline", "--input", f, "--roads", "roads.json", "--mode", "high",
                  "--out", "bl", "--no-progress"), True),
                (("predict", "--model", "tinyh", "--input", f, "--out", "p.npz"), False),
                (("train", "--model", "tinyh", "--data", f, "--no-progress"), True)]

    for p in event_variants(root / "ev.h5", bad_dir):
        for args, need_label in event_commands(str(p.relative_to(root))):
            cases.append(("events", args, lambda q, n=need_label: events_valid(q, n), p))
    for p in jet_variants(root / "jets.h5", bad_dir):
        cases.append(("jets", ("train", "--model", "jet", "--data", str(p.relative_to(root)),
                               "--no-progress", "--no-evaluate"), jets_valid, p))
    for p in table_variants(root / "t.csv", root / "t.parquet", bad_dir):
        cases.append(("table", ("train", "--model", "tab", "--data", str(p.relative_to(root)),
                                "--no-progress"), table_valid, p))
    good_vectors = root / "build" / "tinyh" / "vectors.npz"
    saved = good_vectors.read_bytes()
    vector_cases = vector_variants(good_vectors, bad_dir)

    ran = {"events": 0, "jets": 0, "table": 0, "vectors": 0}
    for kind, args, oracle, path in cases:
        if oracle(path):
            continue
        check_refused(root, args, keep | {str(p.relative_to(root)) for p in bad_dir.rglob("*")})
        ran[kind] += 1
    for p in vector_cases:
        if vectors_valid(p):
            continue
        shutil.copyfile(p, good_vectors)
        vkeep = keep | {str(q.relative_to(root)) for q in bad_dir.rglob("*")}
        vkeep.add(str(good_vectors.relative_to(root)))
        for args in (("rtl", "--model", "tinyh"), ("sim", "--model", "tinyh")):
            check_refused(root, args, vkeep)
            ran["vectors"] += 1
    good_vectors.write_bytes(saved)
    print("invalid cases refused:", ran)
    assert sum(ran.values()) >= MIN_INVALID, ran
    assert all(ran.values()), ran
