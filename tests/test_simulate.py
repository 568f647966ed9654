import h5py
import numpy as np
import pytest

from trigkit.l0.detector import LABELS, SAMPLES, SimConfig
from trigkit.l0.simulate import simulate, write_h5

CONTRACT_KEYS = ("hits", "label", "pt", "q", "eta", "vtx_r", "vtx_z")


def test_same_seed_same_events_different_seed_different(cfg):
    a = simulate(cfg, "mixed", 5000, 3)
    b = simulate(cfg, "mixed", 5000, 3)
    c = simulate(cfg, "mixed", 5000, 4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["hits"], c["hits"])


def test_h5_files_are_byte_identical_for_the_same_seed(cfg, tmp_path):
    p1, p2 = tmp_path / "a.h5", tmp_path / "b.h5"
    write_h5(p1, cfg, "mixed", 5000, 11)
    write_h5(p2, cfg, "mixed", 5000, 11)
    assert p1.read_bytes() == p2.read_bytes()


def test_h5_contract_datasets_and_attributes(cfg, tmp_path):
    p = tmp_path / "m.h5"
    write_h5(p, cfg, "mixed", 300, 5)
    with h5py.File(p) as f:
        for k in CONTRACT_KEYS:
            assert k in f and f[k].shape[0] == 300
        assert f["hits"].shape == (300, 9, 384) and f["hits"].dtype == np.uint8
        assert f["label"].dtype.kind == "i"
        assert f.attrs["seed"] == 5 and f.attrs["sample"] == "mixed"
        assert "noise_rate" in f.attrs["config"]
        assert f["vtx_r"].attrs["units"] == "cm"
    # nothing but the file is left in the directory (no temporaries)
    assert [x.name for x in tmp_path.iterdir()] == ["m.h5"]


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s != "mixed"])
def test_every_single_sample_type(cfg, sample):
    ev = simulate(cfg, sample, 2000, 8)
    assert ev["hits"].shape == (2000, 9, 384)
    assert set(np.unique(ev["label"])) == {LABELS[sample]}
    g = cfg.generator
    if sample == "noise":
        assert np.isnan(ev["pt"]).all() and np.isnan(ev["vtx_r"]).all()
        assert (ev["n_layers_hit"] == 0).all()
        return
    assert np.isfinite(ev["pt"]).all()
    if sample == "prompt":
        assert (ev["vtx_r"] == 0).all()
        assert ev["vtx_z"].std() == pytest.approx(100 * g.vertex_z_sigma_m, rel=0.1)
        assert ev["pt"].min() >= g.pt_min_gev and ev["pt"].max() <= g.pt_max_gev
        assert set(np.unique(ev["q"])) == {-1, 1}
    if sample == "nonpointing":
        r = ev["vtx_r"] / 100
        assert r.min() >= g.nonpointing_r_min_m and r.max() <= g.nonpointing_r_max_m
    if sample == "darkphoton":
        r = ev["vtx_r"] / 100
        assert r.min() >= g.darkphoton_r_min_m and r.max() <= g.darkphoton_r_max_m
        assert (ev["mu_q"].sum(axis=1) == 0).all() and (np.abs(ev["mu_q"]) == 1).all()
        theta = 2 * np.arctan(np.exp(-ev["mu_eta"].astype(np.float64)))
        opening = np.abs(theta[:, 0] - theta[:, 1])
        assert opening.min() >= g.darkphoton_opening_min - 1e-4
        assert opening.max() <= g.darkphoton_opening_max + 1e-4
        assert np.nanmin(ev["mu_pt"]) >= g.darkphoton_pt_min_gev
        assert np.nanmax(ev["mu_pt"]) <= g.darkphoton_pt_max_gev
        assert (ev["n_layers_hit"] == 9).mean() > 0.9


def test_mixed_sample_fractions(cfg):
    ev = simulate(cfg, "mixed", 8000, 2)
    frac = np.bincount(ev["label"], minlength=4) / 8000
    want = cfg.generator.mixed_fractions
    for name, lab in LABELS.items():
        assert frac[lab] == pytest.approx(want[name], abs=0.025)


@pytest.mark.parametrize("rate", [1e-3, 1e-2])
def test_noise_occupancy_matches_configured_rate(cfg, rate):
    ev = simulate(cfg.replace(detector={"noise_rate": rate}), "noise", 2000, 1)
    assert ev["hits"].mean() == pytest.approx(rate, rel=0.10)


def test_prompt_muons_above_10_gev_hit_at_least_7_layers(cfg):
    ev = simulate(cfg, "prompt", 4000, 6)
    layers_with_hits = ev["hits"].any(axis=2).sum(axis=1)
    sel = ev["pt"] > 10
    assert (layers_with_hits[sel] >= 7).mean() >= 0.80


def test_ideal_detector_gives_one_strip_per_crossed_layer(quiet_cfg):
    ev = simulate(quiet_cfg, "prompt", 500, 4)
    crossed = np.isfinite(ev["mu_x"][:, 0])
    np.testing.assert_array_equal(ev["hits"].sum(axis=2), crossed.astype(int))
    col = np.floor(ev["mu_x"][:, 0][crossed]).astype(int)
    ev_idx, row = np.nonzero(crossed)
    assert ev["hits"][ev_idx, row, col].all()


def test_zero_efficiency_leaves_only_noise(cfg):
    ev = simulate(cfg.replace(detector={"efficiency": 0.0, "noise_rate": 0.0}), "prompt", 300, 1)
    assert ev["hits"].sum() == 0


def test_layer_efficiency_and_cluster_sizes(cfg):
    c = cfg.replace(detector={"noise_rate": 0.0, "efficiency": 0.8,
                              "cluster_size_probs": [0.5, 0.3, 0.2]})
    ev = simulate(c, "prompt", 3000, 9)
    crossed = np.isfinite(ev["mu_x"][:, 0])
    fired = ev["hits"].any(axis=2)
    assert fired[crossed].mean() == pytest.approx(0.8, abs=0.01)
    sizes = ev["hits"].sum(axis=2)[fired & crossed]
    edge = (np.floor(ev["mu_x"][:, 0]) <= 0) | (np.floor(ev["mu_x"][:, 0]) >= 383)
    sizes = ev["hits"].sum(axis=2)[fired & crossed & ~edge]
    frac = np.bincount(sizes, minlength=4)[1:4] / sizes.size
    np.testing.assert_allclose(frac, [0.5, 0.3, 0.2], atol=0.02)


def test_cavern_background_tracklets_and_bursts(cfg):
    base = cfg.replace(detector={"noise_rate": 0.0})
    tr = simulate(base.replace(detector={"tracklet_rate": 1.0}), "noise", 2000, 1)
    per_event = tr["hits"].sum(axis=(1, 2))
    layers_per_station = np.mean([len(r) for r in base.detector.stations.values()])
    assert per_event.mean() == pytest.approx(1.0 * layers_per_station * 0.95, rel=0.1)
    bursty = base.replace(detector={"burst_rate": 0.5, "burst_max_strips": 6})
    bu = simulate(bursty, "noise", 2000, 1)
    # bursts are runs of adjacent strips in one layer: a strip next to another one is common
    h = bu["hits"].astype(int)
    adjacent_pairs = (h[:, :, 1:] & h[:, :, :-1]).sum()
    # bursts of L = 2..6 strips have L - 1 adjacent pairs: pairs / strips is about 3/4
    assert adjacent_pairs / h.sum() == pytest.approx(0.75, abs=0.08)


def test_both_dark_photon_muons_leave_hits_at_their_true_crossings(quiet_cfg):
    ev = simulate(quiet_cfg, "darkphoton", 400, 3)
    ev_idx, slot, row = np.nonzero(np.isfinite(ev["mu_x"]))
    col = np.floor(ev["mu_x"][ev_idx, slot, row]).astype(int)
    assert slot.max() == 1
    assert ev["hits"][ev_idx, row, col].all()


def test_default_config_round_trips_through_dict():
    c = SimConfig()
    assert SimConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("sample", ["nonpointing", "darkphoton"])
def test_muon_events_are_inside_the_sector_acceptance(cfg, sample):
    ev = simulate(cfg, sample, 2000, 12)
    pivot = list(cfg.detector.stations[cfg.detector.pivot_station])
    assert np.isfinite(ev["mu_x"][:, :, pivot]).any(axis=(1, 2)).all()
    loose = cfg.replace(generator={"require_pivot_crossing": False})
    ev = simulate(loose, "nonpointing", 2000, 12)
    assert (~np.isfinite(ev["mu_x"][:, :, pivot]).any(axis=(1, 2))).mean() > 0.05
