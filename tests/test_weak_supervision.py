"""The dijet resonance toy, the bump hunt, and a few training steps of the CWoLa (k-fold
classifiers) and ANODE (conditional flows) searches on the shared trainer."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trigkit.core.card import load_card
from trigkit.core.errors import ConfigError
from trigkit.evaluate import evaluate_model
from trigkit.evaluate.hunt import bump_hunt, folds_of, poisson_z
from trigkit.learn.data import load_splits
from trigkit.learn.flows import ConditionalFlow, flow_log_prob, flow_sample
from trigkit.learn.metrics import roc_auc
from trigkit.learn.train import Trainer, load_trained_model
from trigkit.offline.dijet import (
    DATA_BACKGROUND,
    LABELLED_BACKGROUND,
    LABELLED_SIGNAL,
    SIGNAL_POOL,
    DijetConfig,
    features,
    generate,
    in_sr,
    injected,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = {"data.events": 6000, "data.generator": {"signal_events": 600, "labelled_events": 600},
        "training.epochs": 1, "evaluation.variants": {}, "evaluation.hunt.fractions": [0.0, 0.05],
        "evaluation.hunt.folds": 2, "evaluation.hunt.epochs": 1,
        "evaluation.hunt.keep": [0.2], "evaluation.hunt.background_samples": 3000}


def _card(name: str, overrides: dict = TINY):
    card = load_card(name, models_dir=ROOT / "models")
    return card.with_overrides(card.name, overrides)


def test_generator_parts_shapes_and_seeds():
    cfg = DijetConfig(signal_events=500, labelled_events=300)
    a, b, c = generate(cfg, 2000, 1), generate(cfg, 2000, 1), generate(cfg, 2000, 2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["mjj"], c["mjj"])
    counts = {p: int(np.sum(a["part"] == p)) for p in (DATA_BACKGROUND, SIGNAL_POOL,
                                                        LABELLED_BACKGROUND, LABELLED_SIGNAL)}
    assert counts[DATA_BACKGROUND] == 2000 and counts[LABELLED_BACKGROUND] == 300
    assert 490 <= counts[SIGNAL_POOL] <= 500  # the far tail of the resonance is dropped
    assert np.all((a["mjj"] >= cfg.m_min) & (a["mjj"] <= cfg.m_max))
    assert np.all(a["mj1"] >= a["mj2"])
    assert features(a, a).shape == (len(a["mjj"]), 4)


def test_resonance_at_its_mass_in_the_signal_region_on_a_falling_background():
    cfg = DijetConfig(signal_events=5000, labelled_events=100)
    ev = generate(cfg, 50000, 3)
    sig, bkg = ev["part"] == SIGNAL_POOL, ev["part"] == DATA_BACKGROUND
    assert abs(np.median(ev["mjj"][sig]) - cfg.resonance_mass) < 0.005 * cfg.resonance_mass
    assert np.std(ev["mjj"][sig]) == pytest.approx(cfg.resonance_width * cfg.resonance_mass,
                                                   rel=0.05)
    assert in_sr(ev["mjj"][sig], cfg).mean() > 0.99
    counts, _ = np.histogram(ev["mjj"][bkg], 9, (cfg.m_min, cfg.m_max))
    assert np.all(np.diff(counts) < 0)  # smoothly falling
    # labelled background lies in the signal region; signal jets carry Y and Z masses
    assert in_sr(ev["mjj"][ev["part"] == LABELLED_BACKGROUND], cfg).all()
    assert np.median(ev["mj1"][sig]) == pytest.approx(cfg.y_mass, rel=0.02)
    assert np.median(ev["mj2"][sig]) == pytest.approx(cfg.z_mass, rel=0.02)


@pytest.mark.parametrize(("correlation", "correlated"), [(0.0, False), (1.0, True)])
def test_mass_correlation_of_the_background(correlation, correlated):
    cfg = DijetConfig(mass_correlation=correlation, signal_events=0, labelled_events=10)
    ev = generate(cfg, 60000, 5)
    bkg = ev["part"] == DATA_BACKGROUND
    auc = roc_auc(in_sr(ev["mjj"][bkg], cfg), np.log(ev["mj1"][bkg]))
    assert (abs(auc - 0.5) > 0.03) == correlated, auc


def test_injected_fraction_and_pool_limit():
    cfg = DijetConfig(signal_events=100, labelled_events=10)
    ev = generate(cfg, 10000, 1)
    data = injected(ev, 0.005)
    assert int(np.sum(data["label"] == 1)) == 50
    assert int(np.sum(data["label"] == 0)) == 10000
    with pytest.raises(ConfigError, match="signal_events"):
        injected(ev, 0.5)


def test_bump_hunt_sees_a_large_bump_and_not_the_background_alone():
    cfg = DijetConfig(signal_events=3000, labelled_events=10)
    ev = generate(cfg, 100000, 7)
    bkg_only = bump_hunt(injected(ev, 0.0)["mjj"], cfg, 36)
    with_bump = bump_hunt(injected(ev, 0.03)["mjj"], cfg, 36)
    assert abs(bkg_only["z"]) < 3
    assert with_bump["z"] > 5
    assert with_bump["n_sr"] - bkg_only["n_sr"] == pytest.approx(3000, abs=30)


def test_poisson_z():
    assert poisson_z(100.0, 100.0) == 0.0
    assert poisson_z(10000.0 + 300.0, 10000.0) == pytest.approx(3.0, rel=0.02)
    assert poisson_z(50.0, 100.0) < 0
    assert math.isnan(poisson_z(5.0, 0.0))


def test_folds_are_balanced_and_seeded():
    f = folds_of(1000, 5, 3)
    assert np.bincount(f).tolist() == [200] * 5
    assert np.array_equal(f, folds_of(1000, 5, 3))


def test_loader_targets_sr_for_cwola_and_sidebands_for_anode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cw = load_splits(_card("dijet_cwola"))
    cfg = cw["train"].context["dijet"]
    for sp in cw.values():
        assert np.array_equal(sp.target == 1, in_sr(sp.truth("mjj"), cfg))
        assert sp.images().shape[1:] == (4,)
    an = load_splits(_card("dijet_anode"))
    assert not in_sr(an["train"].truth("mjj"), cfg).any()
    assert not in_sr(an["val"].truth("mjj"), cfg).any()
    assert in_sr(an["test"].truth("mjj"), cfg).any()
    assert an["train"].images().shape[1:] == (5,)


def test_cwola_kfold_hunt_few_steps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    card = _card("dijet_cwola")
    splits = load_splits(card)
    Trainer(card, progress=False, verbose=False, splits=splits).fit()
    out = tmp_path / "build" / card.name
    res = evaluate_model(card, load_trained_model(card), splits, out)
    hunt = res["metrics"]["hunt"]
    assert hunt["method"] == "CWoLa" and list(hunt["table"]) == ["0", "0.05"]
    row = hunt["table"]["0.05"]
    for key in ("Z bump hunt", "Z supervised (keep 20 %)", "Z CWoLa (keep 20 %)"):
        assert math.isfinite(row[key]), key
    assert hunt["table"]["0"]["signal in SR"] == 0 and row["signal in SR"] > 0
    for fold in range(2):  # one trained model per fold and fraction
        assert (out / "hunt" / "f0.05" / f"fold{fold}" / "best.pt").is_file()
    assert (out / "plots" / "significance_keep20.png").is_file()


def test_anode_hunt_few_steps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    card = _card("dijet_anode")
    splits = load_splits(card)
    fit = Trainer(card, progress=False, verbose=False, splits=splits).fit()
    assert math.isfinite(fit.history[-1]["val_loss"])
    out = tmp_path / "build" / card.name
    res = evaluate_model(card, load_trained_model(card), splits, out)
    hunt = res["metrics"]["hunt"]
    assert hunt["method"] == "ANODE"
    assert math.isfinite(hunt["table"]["0.05"]["Z ANODE (keep 20 %)"])
    est = hunt["truth_after_cut"]["0"]["ANODE keep 20 %"]["background estimate"]
    assert est > 0
    assert (out / "hunt" / "f0.05" / "sb" / "best.pt").is_file()


def test_conditional_flow_density_and_samples():
    torch.manual_seed(0)
    flow = ConditionalFlow(2, transforms=2, hidden=(8,))
    rows = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    logp = flow_log_prob(flow, rows)
    assert logp.shape == (50,) and np.all(np.isfinite(logp))
    a = flow_sample(flow, rows[:, -1], seed=1)
    assert a.shape == (50, 2) and np.array_equal(a, flow_sample(flow, rows[:, -1], seed=1))
