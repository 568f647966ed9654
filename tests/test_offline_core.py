"""Training-core pieces shared by the offline models: working points, class mapping, input
codes, variant cards, augmentation and anomaly training, on tiny synthetic data."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from trigkit.core.card import ModelCard, load_card
from trigkit.core.config import from_dict
from trigkit.core.errors import ConfigError, TrigkitError
from trigkit.learn.data import class_targets, input_codes, load_splits
from trigkit.learn.metrics import working_point_metrics


def test_working_points_match_a_direct_count():
    rng = np.random.default_rng(0)
    sig = rng.normal(1.0, 1.0, 3000)
    bkg = rng.normal(0.0, 1.0, 5000)
    score = np.r_[sig, bkg]
    is_sig = np.r_[np.ones(3000, bool), np.zeros(5000, bool)]
    wp = working_point_metrics(is_sig, score, signal_eff=0.5, fake_rate=0.05)
    # direct: AUC = P(score_sig > score_bkg) over all pairs (ties count half)
    pairs = (sig[:, None] > bkg[None, :]).mean() + 0.5 * (sig[:, None] == bkg[None, :]).mean()
    assert wp["auc"] == pytest.approx(pairs, abs=1e-9)
    cut = np.sort(sig)[::-1][1499]
    assert wp["bkg_eff_at_sig_eff"] == pytest.approx(np.mean(bkg >= cut))
    assert wp["bkg_rejection_at_sig_eff"] == pytest.approx(1 / np.mean(bkg >= cut))
    t = np.sort(bkg)[::-1][int(0.05 * 5000)]  # just below the 5 % point
    assert np.mean(bkg > t) <= 0.05
    assert wp["eff_at_fake_rate"] == pytest.approx(np.mean(sig > t), abs=2e-3)
    # analytic: two unit Gaussians 1 sigma apart have AUC = Phi(1/sqrt(2)) = 0.760
    assert wp["auc"] == pytest.approx(0.760, abs=0.02)


def test_working_points_need_both_classes():
    with pytest.raises(ValueError, match="both signal and background"):
        working_point_metrics(np.ones(5, bool), np.arange(5.0))


def _card(**data) -> ModelCard:
    base = {"name": "t", "task": "classification",
            "data": {"source": "jets", "input_shape": [2, 8, 8], "classes": ["qcd", "top"],
                     **data},
            "architecture": {"kind": "cnn", "eta_pool": 1, "channels": [2], "pool": [1, 1],
                             "dense": [4]}}
    return from_dict(ModelCard, base)


def test_class_targets_by_name_and_errors():
    card = _card()
    names = {"qcd": 0, "darkphoton": 1, "top": 2}
    y = class_targets(card, np.array([0, 1, 2, 2, 0]), names, "f.h5")
    assert y.tolist() == [0, -1, 1, 1, 0]
    with pytest.raises(TrigkitError, match="not a label of f.h5; its labels are: qcd"):
        class_targets(_card(classes=["qcd", "wprime"]), np.zeros(3, int), names, "f.h5")
    with pytest.raises(TrigkitError, match=r"value\(s\) \[7\] that are not among the classes"):
        class_targets(card, np.array([0, 7]), names, "f.h5")


def test_input_codes_images_and_tables():
    card = _card(input_bits=4, input_lsb=8.0)
    x = np.array([0.0, 3.9, 4.1, 100.0, 1000.0])
    assert input_codes(card, x).tolist() == [0, 0, 1, 12, 15]
    table = from_dict(ModelCard, {"name": "t", "task": "classification", "data": {
        "source": "x.csv", "features": ["a"], "input_shape": [1], "input_bits": 4,
        "input_lsb": 0.5, "classes": ["b", "s"]}, "architecture": {"kind": "mlp"}})
    z = np.array([-10.0, -1.0, 0.0, 0.6, 10.0])
    assert input_codes(table, z).tolist() == [-8, -2, 0, 1, 7]  # two's complement codes


def test_card_checks_offline_settings():
    with pytest.raises(ConfigError, match="needs data.features"):
        from_dict(ModelCard, {"name": "t", "task": "classification",
                              "data": {"source": "x.parquet"}, "architecture": {"kind": "mlp"}})
    with pytest.raises(ConfigError, match="needs data.input_bits"):
        _card_q = {"name": "t", "task": "classification",
                   "data": {"source": "jets", "input_shape": [2, 8, 8], "classes": ["qcd", "top"]},
                   "architecture": {"kind": "cnn"}, "quant": {"weights": "ternary"}}
        from_dict(ModelCard, _card_q)
    with pytest.raises(ConfigError, match="task anomaly needs architecture.kind: autoencoder"):
        from_dict(ModelCard, {"name": "t", "task": "anomaly", "data": {"source": "jets"},
                              "architecture": {"kind": "cnn"}})
    with pytest.raises(ConfigError, match="data.augment 'mixup' unknown"):
        _card(augment=["mixup"])


def test_variant_card_overrides():
    card = _card(augment=["jet_symmetries"])
    v = card.with_overrides("t_no_aug", {"data.augment": [], "training.epochs": 2})
    assert v.name == "t_no_aug" and v.data.augment == () and v.training.epochs == 2
    assert v.data.classes == card.data.classes
    with pytest.raises(ConfigError, match="unknown key"):
        card.with_overrides("t2", {"data.augmentation": []})


def write_jet_file(path: Path, n: int = 2048, seed: int = 0) -> Path:
    """A tiny two-class image file in trigkit's jet layout: 'top' images are wider blobs."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n) * 2  # qcd = 0, top = 2
    yy, xx = np.mgrid[:8, :8] - 3.5
    width = np.where(label == 2, 2.5, 1.0)[:, None, None]
    blob = np.exp(-(yy**2 + xx**2)[None] / (2 * width**2))
    images = np.stack([blob * rng.uniform(0.5, 1.5, (n, 1, 1)), 0.5 * blob], axis=1)
    images = (images / images.sum(axis=(1, 2, 3), keepdims=True)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["label"] = label
        f["jet_mass"] = (width[:, 0, 0] * 50 + rng.normal(0, 5, n)).astype(np.float32)
        f.attrs["label_names"] = json.dumps(["qcd", "darkphoton", "top"])
        f.attrs["pixel_size"] = 0.1
    return path


def _write(workdir, card: dict):
    (workdir / "models" / f"{card['name']}.yaml").write_text(yaml.safe_dump(card))
    return load_card(card["name"])


def test_jet_image_file_trains_classifier_and_anomaly_with_disco(workdir):
    import torch

    from trigkit.evaluate import evaluate_model
    from trigkit.learn.train import Trainer, load_trained_model

    src = str(write_jet_file(workdir / "jets.h5"))
    data = {"source": src, "format": "jet_images", "input_shape": [2, 8, 8],
            "classes": ["qcd", "top"], "split": [0.5, 0.25, 0.25]}
    cls = _write(workdir, {
        "name": "tiny_jet", "task": "classification", "data": data,
        "architecture": {"kind": "cnn", "eta_pool": 1, "channels": [4], "padding": "same",
                         "pool": [2, 2], "dense": [8]},
        "training": {"epochs": 3, "batch_size": 32, "lr": 0.01, "threads": 1}})
    splits = load_splits(cls)
    assert splits["train"].images().shape[1:] == (2, 8, 8)
    assert set(np.unique(splits["test"].target)) == {0, 1}
    res = Trainer(cls, progress=False, verbose=False).fit()
    assert res.history[-1]["val_loss"] < res.history[0]["train_loss"]
    out = evaluate_model(cls, load_trained_model(cls), splits, workdir / "build" / "tiny_jet")
    assert out["metrics"]["auc"] > 0.9  # wide vs narrow blobs are easy
    assert out["baseline"]["observable"]  # a single observable beside the network
    assert (workdir / "build" / "tiny_jet" / "plots" / "roc.png").is_file()

    ae = _write(workdir, {
        "name": "tiny_ae", "task": "anomaly", "data": {**data, "train_on": ["qcd"]},
        "architecture": {"kind": "autoencoder", "channels": [4], "latent_dim": 4},
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.01, "threads": 1,
                     "disco_lambda": 5.0, "adversary_lambda": 0.5, "decorrelate": "jet_mass"}})
    splits = load_splits(ae)
    assert np.all(splits["train"].target == 0) and np.all(splits["val"].target == 0)
    assert set(np.unique(splits["test"].target)) == {0, 1}
    torch.manual_seed(0)
    res = Trainer(ae, progress=False, verbose=False).fit()
    assert len(res.history) == 2 and np.isfinite(res.history[-1]["val_loss"])
    # resuming restores the adversary too: a third epoch continues from the checkpoint
    res3 = Trainer(ae, progress=False, verbose=False).fit(epochs=3)
    assert len(res3.history) == 3
    out = evaluate_model(ae, load_trained_model(ae), splits, workdir / "build" / "tiny_ae")
    m = out["metrics"]
    assert 0.0 <= m["auc"] <= 1.0 and m["inv_jsd_at_50pct_bkg_eff"] > 0
    assert (workdir / "build" / "tiny_ae" / "plots" / "sculpting.png").is_file()


def test_train_on_a_table_given_on_the_command_line(workdir):
    import subprocess
    import sys

    rng = np.random.default_rng(2)
    for name, shift in (("mine.csv", 1.0), ("other.csv", 0.5)):
        y = rng.integers(0, 2, 3000)
        a = rng.normal(0, 1, 3000) + shift * y
        rows = [f"{v:.4f},{'s' if k else 'b'}" for v, k in zip(a, y, strict=True)]
        (workdir / name).write_text("a,label\n" + "\n".join(rows) + "\n")
    _write(workdir, {"name": "tab", "task": "classification",
                     "data": {"source": "mine.csv", "features": ["a"], "input_shape": [1],
                              "classes": ["b", "s"]},
                     "architecture": {"kind": "mlp", "dense": [4]},
                     "training": {"epochs": 4, "threads": 1, "batch_size": 64, "lr": 0.02},
                     "evaluation": {"background": "b"}})
    exe = str(Path(sys.executable).with_name("trigkit"))

    def run(*args):
        return subprocess.run([exe, "train", "--model", "tab", "--no-progress", *args],
                              cwd=workdir, capture_output=True, text=True)

    res = run("--data", "other.csv", "--threads", "1")
    assert res.returncode == 0, res.stderr
    assert json.loads((workdir / "build" / "tab_other" / "report.json").read_text()
                      )["training"]["threads"] == 1
    derived = load_card("tab_other")
    assert derived.data.source == "other.csv" and derived.data.features == ("a",)
    report = json.loads((workdir / "build" / "tab_other" / "report.json").read_text())
    assert 0.5 < report["metrics"]["auc"] < 0.8  # shift 0.5: AUC about 0.64
    assert run("--data", "other.csv").returncode == 0  # the same card again is fine
    card_file = workdir / "models" / "tab_other.yaml"
    card_file.write_text(card_file.read_text().replace("dense:\n  - 4", "dense:\n  - 8"))
    res = run("--data", "other.csv")
    assert res.returncode != 0 and "exists and differs" in res.stderr
    assert "- 8" in card_file.read_text()  # the user's edit is kept
    res = run("--data", "missing.csv")
    assert res.returncode != 0 and "--data missing.csv not found" in res.stderr
