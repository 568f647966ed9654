"""Bring your own data: a user's CSV or ROOT table trains any table card with one command,
ROOT hit files round-trip, and predict scores hit, jet-image and table files exactly like the
integer reference / the trained network on the same inputs."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pyarrow.csv as pcsv
import pytest
import torch
import yaml

import trigkit
from test_offline_core import write_jet_file
from test_trust import run_cli
from trigkit.core.card import load_card
from trigkit.core.rootio import write_tree
from trigkit.evaluate.common import predict_outputs
from trigkit.firmware.export import export_qonnx
from trigkit.firmware.reference import ReferenceModel
from trigkit.l0.detector import SimConfig
from trigkit.l0.simulate import write_h5
from trigkit.learn.data import input_codes
from trigkit.learn.models import build_model
from trigkit.learn.train import load_trained_model

DEMO = Path(__file__).parent / "data" / "monojet_demo.csv"
TABLE_CARD = {
    "name": "dm", "task": "classification",
    "data": {"source": "monojet", "events": 200, "features": ["jet_pt", "jet_eta", "jet_phi"],
             "input_shape": [3], "standardise": True,
             "classes": ["sm", "dmsimp_v_500", "alp_gg"], "keep": ["met"]},
    "architecture": {"kind": "mlp", "dense": [8]},
    "training": {"epochs": 3, "batch_size": 64, "lr": 0.01, "threads": 1},
}


def write(workdir: Path, card: dict) -> None:
    (workdir / "models" / f"{card['name']}.yaml").write_text(yaml.safe_dump(card))


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and "bad" not in p.name and p.suffix not in (".csv", ".root")}


def as_root(csv: Path, out: Path) -> Path:
    table = pcsv.read_csv(csv)
    return write_tree(out, iter([{k: table.column(k).to_numpy() for k in table.column_names}]))


def test_a_csv_and_a_root_file_train_with_one_command_each(workdir):
    write(workdir, TABLE_CARD)
    shutil.copy(DEMO, workdir / "demo.csv")
    as_root(workdir / "demo.csv", workdir / "demo.root")
    common = ("--features", "jet_pt,met,dphi_jet_met", "--label", "signal",
              "--classes", "sm,dark_matter", "--no-progress")
    for name in ("demo.csv", "demo.root"):
        code, out, err = run_cli("train", "--model", "dm", "--data", name,
                                 "--name", f"dm_{name.replace('.', '_')}", *common)
        assert code == 0, err
    reports = [json.loads((workdir / "build" / n / "report.json").read_text())
               for n in ("dm_demo_csv", "dm_demo_root")]
    assert reports[0]["metrics"] == reports[1]["metrics"]  # the same events, the same numbers
    assert 0.6 < reports[0]["metrics"]["auc"] < 0.95
    card = load_card("dm_demo_csv")
    assert card.data.features == ("jet_pt", "met", "dphi_jet_met")
    assert card.data.input_shape == (3,) and card.data.classes == ("sm", "dark_matter")
    assert card.data.keep == ("met",) and "demo.csv" in card.description
    saved = yaml.safe_load((workdir / "models" / "dm_demo_csv.yaml").read_text())
    assert "events" not in saved["data"]  # generator settings no longer apply
    importance = reports[0]["metrics"]["permutation_importance"]
    assert set(importance) == {"jet_pt", "met", "dphi_jet_met"}  # only the chosen inputs


def test_binary_and_auto_take_the_classes_from_the_file(workdir):
    write(workdir, TABLE_CARD)
    shutil.copy(DEMO, workdir / "demo.csv")
    code, _, err = run_cli("train", "--model", "dm", "--data", "demo.csv", "--features",
                           "jet_pt,met", "--label", "signal", "--binary", "--epochs", "1",
                           "--no-progress", "--no-evaluate")
    assert code == 0, err
    assert load_card("dm_demo").data.classes == ("class0", "class1")


def test_failures_leave_models_and_build_as_they_were(workdir):
    write(workdir, TABLE_CARD)
    shutil.copy(DEMO, workdir / "demo.csv")
    rows = DEMO.read_text().splitlines()
    (workdir / "bad_label.csv").write_text("\n".join([*rows, rows[1][:-1] + "2"]) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        import awkward as ak
        import uproot

        with uproot.recreate("bad_jagged.root") as f:
            f.mktree("events", {"jet_pt": "var * float64", "signal": "i8"})
            f["events"].extend({"jet_pt": ak.Array([[1.0, 2.0], [3.0]]),
                                "signal": np.array([0, 1])})
        with uproot.recreate("bad_empty.root") as f:
            f.mktree("events", {"jet_pt": "f8", "met": "f8", "signal": "i8"})
    as_root(workdir / "demo.csv", workdir / "bad_nobranch.root")
    before = snapshot(workdir)
    cases = [
        (("--data", "bad_label.csv", "--classes", "sm,dm"), r"value\(s\) \[2\] .*not among"),
        (("--data", "demo.csv", "--features", "jet_pt,nope"), "nope"),
        (("--data", "bad_jagged.root"), "jet_pt.*jagged"),
        (("--data", "bad_empty.root"), "no rows|no events|empty"),
        (("--data", "bad_nobranch.root", "--features", "jet_pt,meh"), "no feature column .meh"),
        (("--features", "jet_pt"), "go with --data"),
    ]
    for args, pattern in cases:
        code, _, err = run_cli("train", "--model", "dm", "--label", "signal", "--no-progress",
                               *args)
        assert code == 2 and err.count("\n") == 1, (args, err)
        import re

        assert re.search(pattern, err), (args, err)
        assert snapshot(workdir) == before, args


def test_simulate_writes_root_that_trains_like_hdf5(workdir):
    code, _, err = run_cli("simulate", "--sample", "mixed", "--events", "700", "--seed", "2",
                           "--out", "ev.root", "--no-progress")
    assert code == 0, err
    write_h5(workdir / "ev.h5", SimConfig(), "mixed", 700, 2)
    from trigkit.l0.events import as_hdf5

    with h5py.File(as_hdf5(workdir / "ev.root")) as a, h5py.File(workdir / "ev.h5") as b:
        assert set(a) == set(b)
        for k in b:
            assert np.array_equal(a[k][()], b[k][()], equal_nan=True), k
        assert a.attrs["config"] == b.attrs["config"]


@pytest.fixture
def hit_model(workdir):
    """An exported (untrained) ternary hit-image model."""
    write(workdir, {"name": "hits", "task": "classification",
                    "data": {"events": 300, "seed": 3},
                    "architecture": {"eta_pool": 8, "channels": [4], "pool": [1, 2],
                                     "dense": [8]},
                    "quant": {"weights": "ternary"}})
    card = load_card("hits")
    torch.manual_seed(1)
    model = build_model(card).eval()
    (workdir / "build" / "hits").mkdir(parents=True)
    torch.save({}, workdir / "build" / "hits" / "unused.pt")
    export_qonnx(card, model, workdir / "build" / "hits" / "model.qonnx.onnx")
    return card


def test_predict_on_hit_files_equals_the_reference(workdir, hit_model):
    write_h5(workdir / "ev.h5", SimConfig(), "mixed", 500, 9)
    run_cli("simulate", "--sample", "mixed", "--events", "500", "--seed", "9", "--out",
            "ev.root", "--no-progress")
    with h5py.File(workdir / "ev.h5") as f:
        hits = f["hits"][()]
    y = ReferenceModel(workdir / "build" / "hits" / "model.qonnx.onnx").predict(hits)
    for src, out in (("ev.h5", "s.npz"), ("ev.root", "s.parquet"), ("ev.h5", "s.root")):
        code, _, err = run_cli("predict", "--model", "hits", "--input", src, "--out", out,
                               "--no-progress")
        assert code == 0, err
    assert np.array_equal(np.load(workdir / "s.npz")["y"], y)
    import pyarrow.parquet as pq

    cols = pq.read_table(workdir / "s.parquet").to_pydict()
    assert np.array_equal(np.array(cols["logit_prompt"]), y[:, 1])
    assert np.array_equal(trigkit.load("hits").predict(hits), y)  # the Python API
    code, _, err = run_cli("predict", "--model", "hits", "--input", "ev.h5", "--out", "s.npz")
    assert code == 2 and "exists" in err  # never overwritten without --overwrite


def test_predict_on_a_jet_image_file_and_a_table_equals_the_network(workdir):
    src = write_jet_file(workdir / "jets.h5", n=600)
    write(workdir, {"name": "jet", "task": "classification",
                    "data": {"source": str(src), "format": "jet_images",
                             "input_shape": [2, 8, 8], "classes": ["qcd", "top"]},
                    "architecture": {"kind": "cnn", "eta_pool": 1, "channels": [4],
                                     "padding": "same", "pool": [2, 2], "dense": [8]},
                    "training": {"epochs": 1, "batch_size": 32, "threads": 1}})
    write(workdir, TABLE_CARD)
    for name in ("jet", "dm"):
        code, _, err = run_cli("train", "--model", name, "--no-progress", "--no-evaluate")
        assert code == 0, err
    other = write_jet_file(workdir / "other_jets.h5", n=200, seed=5)
    code, _, err = run_cli("predict", "--model", "jet", "--input", str(other), "--out",
                           "j.npz", "--no-progress")
    assert code == 0, err
    card = load_card("jet")
    with h5py.File(other) as f:
        x = input_codes(card, f["images"][()])
    want = predict_outputs(load_trained_model(card), card, x)
    assert np.array_equal(np.load(workdir / "j.npz")["y"], want)
    # a table: rows standardised with the training rows' statistics, as in training
    card = load_card("dm")
    shutil.copy(DEMO, workdir / "demo.csv")
    code, _, err = run_cli("predict", "--model", "dm", "--input", "demo.csv", "--out", "t.csv",
                           "--no-progress")
    assert code == 0, err
    from trigkit.offline.data import table_rows

    rows = np.concatenate(list(table_rows(card, workdir / "demo.csv")))
    want = predict_outputs(load_trained_model(card), card, rows)
    got = pcsv.read_csv(workdir / "t.csv").column("logit_sm").to_numpy()
    assert np.allclose(got, want[:, 0], rtol=0, atol=1e-6)  # float32 printed as text
    assert np.array_equal(trigkit.load("dm").predict(workdir / "demo.csv"), want)
