import json

import h5py
import numpy as np
import pytest

from trigkit.core.errors import ConfigError, TrigkitError
from trigkit.offline.electrons import (
    CALO_FEATURES,
    ELECTRON_CATEGORIES,
    ELECTRON_COLUMNS,
    ELECTRON_FEATURES,
    TRACK_FEATURES,
    TRT_FEATURES,
    ElectronConfig,
    generate_electrons,
    write_electrons_h5,
)
from trigkit.offline.monojet import (
    MONOJET_COLUMNS,
    MONOJET_MODELS,
    MonojetConfig,
    generate_monojet,
    write_monojet_h5,
)
from trigkit.offline.tabular import read_table


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Rank AUC (no ties in continuous scores)."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    n1 = int(y.sum())
    n0 = len(y) - n1
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def eff_at_fake(sig: np.ndarray, bkg: np.ndarray, fake: float = 0.05) -> float:
    return float(np.mean(sig > np.quantile(bkg, 1.0 - fake)))


# ---- monojet ----------------------------------------------------------------------------------


def test_monojet_models_and_config():
    cfg = MonojetConfig()
    assert len(MONOJET_MODELS) == 7 and cfg.models == MONOJET_MODELS
    assert cfg.processes[0] == "sm"
    assert MonojetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="allowed keys"):
        MonojetConfig.from_dict({"met_cut": 250})
    with pytest.raises(ConfigError, match="'sm'"):
        MonojetConfig.from_dict({"spectra": {"x": [4.0, 1.0]}})
    with pytest.raises(ConfigError, match=r"spectra.x has 1 values"):
        MonojetConfig.from_dict({"spectra": {"sm": [5.0, 1.4], "x": [4.0]}})
    with pytest.raises(ConfigError, match="jet_eta_max"):
        MonojetConfig.from_dict({"jet_eta_max": -1.0})


def test_monojet_shapes_selection_and_determinism():
    cfg = MonojetConfig()
    a = generate_monojet(cfg, "sm", 3000, 5)
    b = generate_monojet(cfg, "sm", 3000, 5)
    c = generate_monojet(cfg, "sm", 3000, 6)
    head = generate_monojet(cfg, "sm", 100, 5)
    assert tuple(a) == MONOJET_COLUMNS
    for k in MONOJET_COLUMNS:
        assert a[k].shape == (3000,)
        assert a[k].dtype == (np.int64 if k == "n_jets" else np.float32)
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k][:100], head[k])
    assert not np.array_equal(a["jet_pt"], c["jet_pt"])
    assert a["met"].min() > cfg.met_min_gev and a["jet_pt"].min() > cfg.jet_pt_min_gev
    assert np.abs(a["jet_eta"]).max() < cfg.jet_eta_max
    assert a["dphi_jet_met"].min() > cfg.dphi_min and a["dphi_jet_met"].max() <= np.pi
    assert np.abs(a["jet_phi"]).max() <= np.pi and a["n_jets"].min() >= 1
    assert (a["ht"] >= a["jet_pt"] - 1e-3).all()
    # the jet recoils against the invisible system
    assert np.median(a["met"] / a["jet_pt"]) == pytest.approx(1.0, abs=0.1)
    assert np.median(a["dphi_jet_met"]) > 2.8
    # different processes with the same seed are independent streams
    s = generate_monojet(cfg, "alp_gg", 3000, 5)
    assert not np.array_equal(s["jet_phi"], a["jet_phi"])
    assert generate_monojet(cfg, "sm", 0, 1)["jet_pt"].shape == (0,)
    with pytest.raises(TrigkitError, match="unknown monojet process 'wimp'; allowed: sm"):
        generate_monojet(cfg, "wimp", 10, 1)
    with pytest.raises(TrigkitError, match="seed"):
        generate_monojet(cfg, "sm", 10, -1)


def test_monojet_signals_harder_and_more_central_but_weak_per_event():
    cfg = MonojetConfig()
    n = 40000
    sm = generate_monojet(cfg, "sm", n, 1)
    y = np.r_[np.zeros(n), np.ones(n)]
    aucs = {}
    for m in ("dmsimp_v_500", "dmsimp_v_2000", "alp_gg"):
        s = generate_monojet(cfg, m, n, 1)
        aucs[m] = auc(y, np.r_[sm["jet_pt"], s["jet_pt"]])
        assert np.mean(s["jet_pt"]) > np.mean(sm["jet_pt"])
        assert np.std(s["jet_eta"]) < np.std(sm["jet_eta"])
    # heavier mediator -> harder spectrum; per-event separation stays weak
    assert 0.52 < aucs["dmsimp_v_500"] < aucs["dmsimp_v_2000"] < aucs["alp_gg"] < 0.75


def test_write_monojet_h5_reads_back_as_a_table(tmp_path):
    cfg = MonojetConfig()
    p = write_monojet_h5(tmp_path / "mj.h5", cfg, 500, 3, processes=["sm", "alp_gg"])
    with h5py.File(p) as f:
        assert json.loads(f.attrs["label_names"]) == ["sm", "alp_gg"]
        assert json.loads(f.attrs["seed"]) == 3
        assert MonojetConfig.from_dict(json.loads(f.attrs["config"])) == cfg
    t = read_table(p, ["jet_pt", "jet_eta"], "label", extra=["n_jets"])
    assert len(t) == 1000 and t.label_names == ("sm", "alp_gg")
    assert np.bincount(t.label).tolist() == [500, 500]
    np.testing.assert_array_equal(t.features[:500, 0],
                                  generate_monojet(cfg, "sm", 500, 3)["jet_pt"])
    assert t.extra["n_jets"].dtype == np.int64
    with pytest.raises(TrigkitError, match="start with 'sm'"):
        write_monojet_h5(tmp_path / "x.h5", cfg, 10, 3, processes=["alp_gg"])
    with pytest.raises(TrigkitError, match="exists"):
        write_monojet_h5(p, cfg, 10, 3)


def test_monojet_default_file_has_all_processes(tmp_path):
    p = write_monojet_h5(tmp_path / "mj.h5", MonojetConfig(), 50, 1)
    t = read_table(p, ["jet_pt"], "label")
    assert t.label_names == ("sm", *MONOJET_MODELS)
    assert np.bincount(t.label).tolist() == [50] * 8


# ---- electrons --------------------------------------------------------------------------------


def test_electron_features_are_nested():
    assert ELECTRON_CATEGORIES == ("trt_calo", "calo_only", "trt_only", "track_only")
    track, trt, calo = set(TRACK_FEATURES), set(TRT_FEATURES), set(CALO_FEATURES)
    assert set(ELECTRON_FEATURES["track_only"]) == track
    assert set(ELECTRON_FEATURES["trt_only"]) == track | trt
    assert set(ELECTRON_FEATURES["calo_only"]) == track | calo
    assert set(ELECTRON_FEATURES["trt_calo"]) == track | trt | calo
    assert ElectronConfig.from_dict(ElectronConfig().to_dict()) == ElectronConfig()
    with pytest.raises(ConfigError, match="electron_fraction"):
        ElectronConfig.from_dict({"electron_fraction": 1.5})


def test_electrons_shapes_nan_pattern_and_determinism():
    cfg = ElectronConfig()
    ev = generate_electrons(cfg, 20000, 4)
    again = generate_electrons(cfg, 20000, 4)
    other = generate_electrons(cfg, 20000, 5)
    assert tuple(ev) == ELECTRON_COLUMNS
    for k in ELECTRON_COLUMNS:
        assert ev[k].shape == (20000,)
        np.testing.assert_array_equal(ev[k], again[k])
    assert ev["label"].dtype == np.int64 and ev["category"].dtype == np.int64
    assert not np.array_equal(ev["pt"], other["pt"])
    assert ev["pt"].min() >= 0.5 and ev["pt"].max() <= 5.0
    assert np.abs(ev["eta"]).max() <= cfg.eta_max
    assert 0.45 < ev["label"].mean() < 0.55
    frac = np.bincount(ev["category"], minlength=4) / len(ev["category"])
    assert frac.min() > 0.03 and frac[0] == frac.max()  # trt_calo is the largest category
    for c, cat in enumerate(ELECTRON_CATEGORIES):
        sel = ev["category"] == c
        for k in (*TRACK_FEATURES, *TRT_FEATURES, *CALO_FEATURES):
            finite = np.isfinite(ev[k][sel])
            if k in ELECTRON_FEATURES[cat]:
                assert finite.all(), (cat, k)
            else:
                assert not finite.any(), (cat, k)
    # no TRT beyond its acceptance
    has_trt = np.isin(ev["category"], (0, 2))
    assert np.abs(ev["eta"][has_trt]).max() < cfg.trt_eta_max
    assert generate_electrons(cfg, 0, 1)["pt"].shape == (0,)


def test_electron_separation_grows_with_pt_and_is_best_with_trt_and_calo():
    ev = generate_electrons(ElectronConfig(), 200000, 2)
    pt, y, cat = ev["pt"], ev["label"] == 1, ev["category"]

    def simple_score(c: int) -> np.ndarray:
        """A cut-based style score: each available detector adds its best variable."""
        s = ev["trk_dpp"] / 0.1
        if c in (0, 2):
            s = s + ev["trt_f_ht"] / 0.05
        if c in (0, 1):
            s = s - np.abs(ev["calo_eop"] - 1.0) / 0.3 - np.maximum(ev["calo_rhad"], 0) / 0.2
        return s

    effs = {}
    for c in range(4):
        s = simple_score(c)
        for name, lo, hi in (("low", 0.5, 1.0), ("high", 3.0, 5.0)):
            sel = (cat == c) & (pt >= lo) & (pt < hi)
            effs[c, name] = eff_at_fake(s[sel & y], s[sel & ~y])
    for c in range(4):
        assert effs[c, "high"] > effs[c, "low"] + 0.02, effs
    assert effs[0, "high"] == max(effs[c, "high"] for c in range(4)), effs
    assert effs[0, "high"] > 0.5 and effs[3, "high"] < 0.4, effs


def test_write_electrons_h5_and_read_a_category(tmp_path):
    p = write_electrons_h5(tmp_path / "el.h5", ElectronConfig(), 3000, 1)
    with h5py.File(p) as f:
        assert json.loads(f.attrs["label_names"]) == ["hadron", "electron"]
        assert json.loads(f.attrs["features"])["trt_only"] == list(ELECTRON_FEATURES["trt_only"])
    feats = ELECTRON_FEATURES["trt_calo"]
    with pytest.raises(TrigkitError, match="NaN"):
        read_table(p, feats, "label")
    t = read_table(p, feats, "label", extra=["pt", "category"], allow_nan=feats)
    assert t.label_names == ("hadron", "electron") and t.features.shape == (3000, len(feats))
    sel = t.extra["category"] == 0
    assert np.isfinite(t.features[sel]).all()


def test_files_are_byte_identical_for_the_same_seed(tmp_path):
    for name in ("a.h5", "b.h5"):
        write_monojet_h5(tmp_path / name, MonojetConfig(), 200, 9, processes=["sm", "alp_gg"])
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    for name in ("c.h5", "d.h5"):
        write_electrons_h5(tmp_path / name, ElectronConfig(), 500, 9)
    assert (tmp_path / "c.h5").read_bytes() == (tmp_path / "d.h5").read_bytes()
