"""Toy jet-image generator (trigkit.offline.jets) and preprocessing (trigkit.offline.jetprep)."""

import json

import h5py
import numpy as np
import pytest

import trigkit.offline.jets.physics as jet_physics
from trigkit.core.errors import ConfigError, TrigkitError
from trigkit.offline.jetprep import (
    apply_symmetries,
    augment,
    centre,
    centroid,
    crop,
    flip,
    image_observables,
    normalise,
    pixelate,
    principal_angle,
    rotate,
    symmetry_flags,
    wrap_phi,
)
from trigkit.offline.jets import (
    LABEL_NAMES,
    LABELS,
    JetConfig,
    convert_jet_file,
    generate,
    generate_constituents,
    make_images,
    read_jet_images,
    write_jets_h5,
)


@pytest.fixture(scope="module")
def samples() -> dict[str, dict[str, np.ndarray]]:
    """1500 jets of each class with the default configuration (raw images in GeV)."""
    cfg = JetConfig()
    return {kind: generate(cfg, kind, 1500, 21) for kind in LABEL_NAMES}


# ---- configuration --------------------------------------------------------------------------
def test_config_defaults_round_trip_and_derived_pixel():
    cfg = JetConfig()
    assert cfg.image_size == 25 and cfg.pixel == pytest.approx(0.1)
    assert JetConfig.from_dict(cfg.to_dict()) == cfg
    assert JetConfig.from_dict({"image_size": 40}).pixel == pytest.approx(2.5 / 40)
    assert JetConfig.from_dict({"pixel_size": 0.05}).window_half == pytest.approx(0.625)
    json.dumps(cfg.to_dict())  # JSON-able for the file attribute


@pytest.mark.parametrize("data, words", [
    ({"imag_size": 25}, "allowed keys"),
    ({"image_size": 2}, "jets.image_size"),
    ({"pt_min_gev": 300.0, "pt_max_gev": 200.0}, "jets.pt_max_gev"),
    ({"preprocess": ["rotate", "centre"]}, "order"),
    ({"preprocess": ["centre", "smooth"]}, "'smooth' is unknown"),
    ({"mixed_fractions": {"qcd": 1.0, "wjets": 1.0}}, "unknown class 'wjets'"),
    ({"darkphoton_parent_mass_min_gev": 3.0}, "darkphoton_parent_mass_min_gev"),
    ({"qcd_em_fraction": 1.0}, "jets.qcd_em_fraction"),
    ({"darkshower_r_inv": 1.5}, "jets.darkshower_r_inv"),
    ({"darkshower_alpha_dark": -0.1}, "jets.darkshower_alpha_dark"),
    ({"darkshower_pion_rho_mass_ratio": 0.0}, "jets.darkshower_pion_rho_mass_ratio"),
    ({"darkshower_pion_mass_gev": 60.0}, "dark rho mass"),
    ({"mixed_fractions": {"qcd": 1.0, "darkshower": -0.1}}, "jets.mixed_fractions.darkshower"),
])
def test_config_errors_name_the_problem(data, words):
    with pytest.raises(ConfigError, match=words):
        JetConfig.from_dict(data)


# ---- generator ------------------------------------------------------------------------------
@pytest.mark.parametrize("sample", ["qcd", "darkphoton", "top", "darkshower", "mixed"])
def test_generate_shapes_dtypes_and_truth(sample):
    cfg = JetConfig()
    d = generate(cfg, sample, 300, 5)
    assert d["images"].shape == (300, 2, 25, 25) and d["images"].dtype == np.float32
    assert d["label"].shape == (300,) and d["label"].dtype == np.int64
    for key in ("jet_pt", "jet_eta", "jet_mass", "n_prongs", "had_fraction",
                "invisible_pt_fraction"):
        assert d[key].shape == (300,) and np.isfinite(d[key]).all()
    assert (d["images"] >= 0).all()
    assert d["jet_pt"].min() >= 250 and d["jet_pt"].max() <= 500
    assert np.abs(d["jet_eta"]).max() <= cfg.eta_max
    assert ((d["had_fraction"] >= 0) & (d["had_fraction"] <= 1)).all()
    if sample != "mixed":
        assert (d["label"] == LABEL_NAMES.index(sample)).all()


def test_mixed_has_exact_fractions_in_shuffled_order():
    d = generate(JetConfig(), "mixed", 400, 3)
    assert np.bincount(d["label"]).tolist() == [200, 100, 100]
    assert not (np.diff(d["label"]) >= 0).all()  # not sorted
    prongs = {0: {1}, 1: {1, 2}, 2: {3}}  # no dark showers in the default mix
    for code, allowed in prongs.items():
        assert set(np.unique(d["n_prongs"][d["label"] == code])) <= allowed


def test_same_seed_identical_different_seed_different():
    cfg = JetConfig()
    a, b, c = (generate(cfg, "mixed", 300, s) for s in (7, 7, 8))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["images"], c["images"])
    assert not np.array_equal(a["label"], c["label"])


def test_results_do_not_depend_on_chunking(monkeypatch, tmp_path):
    monkeypatch.setattr(jet_physics, "CHUNK_JETS", 64)
    cfg = JetConfig()
    full = generate(cfg, "mixed", 150, 4)
    head = generate(cfg, "mixed", 128, 4)
    for k in full:
        np.testing.assert_array_equal(full[k][:128], head[k])
    path = write_jets_h5(tmp_path / "j.h5", cfg, "mixed", 150, 4)
    with h5py.File(path) as f:
        for k in full:
            np.testing.assert_array_equal(f[k][()], full[k])


def test_constituents_reproduce_generate_and_are_padded():
    cfg = JetConfig()
    c = generate_constituents(cfg, "top", 200, 9)
    n, m = c["mask"].shape
    assert n == 200 and all(c[k].shape == (n, m) for k in ("eta", "phi", "pt", "em_pt",
                                                            "had_pt", "pileup"))
    assert not c["pt"][~c["mask"]].any() and (c["n_prongs"] == 3).all()
    assert np.abs(c["phi"][c["mask"]]).max() <= np.pi
    np.testing.assert_array_equal(make_images(cfg, c), generate(cfg, "top", 200, 9)["images"])


def test_bad_requests_are_clear_errors():
    with pytest.raises(TrigkitError, match="allowed: qcd, darkphoton, top, darkshower, mixed"):
        generate(JetConfig(), "wjets", 10, 1)
    with pytest.raises(TrigkitError, match="seed"):
        generate(JetConfig(), "qcd", 10, -1)
    with pytest.raises(TrigkitError, match="allowed: qcd, darkphoton, top, darkshower$"):
        generate_constituents(JetConfig(), "mixed", 10, 1)


# ---- physics sanity -------------------------------------------------------------------------
def test_darkphoton_jets_are_narrower_and_more_hadronic_than_qcd(samples):
    pixel = JetConfig().pixel
    w = {k: image_observables(v["images"], pixel)["width"] for k, v in samples.items()}
    assert w["darkphoton"].mean() < 0.5 * w["qcd"].mean()
    assert w["top"].mean() > w["qcd"].mean()
    had = {k: v["had_fraction"] for k, v in samples.items()}
    assert had["darkphoton"].mean() > 0.85 and 0.55 < had["qcd"].mean() < 0.75
    assert had["qcd"].std() > 0.05  # event-by-event fluctuation
    assert had["darkphoton"].mean() - had["qcd"].mean() > 0.15


def test_top_mass_peaks_near_175_and_qcd_is_much_lighter(samples):
    pixel = JetConfig().pixel
    m = {k: image_observables(v["images"], pixel)["mass"] for k, v in samples.items()}
    assert 140 < np.median(m["top"]) < 200
    hist, edges = np.histogram(m["top"], bins=np.arange(100, 300, 10))
    assert 160 <= edges[hist.argmax()] <= 200
    assert np.median(m["qcd"]) < 0.5 * np.median(m["top"])
    assert np.median(samples["top"]["jet_mass"]) == pytest.approx(172.5, rel=0.05)
    assert np.median(samples["darkphoton"]["jet_mass"]) < 20  # particle level, no pile-up
    np.testing.assert_allclose(samples["qcd"]["pixel_mass"], m["qcd"], rtol=1e-4, atol=1e-2)


def test_pixel_pt_follows_jet_pt_and_darkphoton_prongs(samples):
    for kind, d in samples.items():
        ratio = d["pixel_pt"] / (d["jet_pt"] * (1.0 - d["invisible_pt_fraction"]))
        assert 0.9 < np.median(ratio) < 1.15, kind
    dp = samples["darkphoton"]["n_prongs"]
    assert 0.2 < (dp == 2).mean() < 0.4


def test_normalise_step_gives_unit_sums_same_geometry():
    raw_cfg = JetConfig()
    norm_cfg = JetConfig(preprocess=("centre", "rotate", "flip", "normalise"))
    raw, nrm = generate(raw_cfg, "qcd", 100, 2), generate(norm_cfg, "qcd", 100, 2)
    np.testing.assert_allclose(nrm["images"].sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(nrm["images"], normalise(raw["images"]), rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(raw["had_fraction"], nrm["had_fraction"])


def test_40x40_images():
    d = generate(JetConfig(image_size=40), "top", 50, 1)
    assert d["images"].shape == (50, 2, 40, 40)


# ---- dark showers (semi-visible jets) -------------------------------------------------------
def test_darkshower_addition_leaves_the_other_classes_untouched(monkeypatch):
    """Structural check that the fourth class changes nothing of the first three: the default
    mixed sample (and any mix without dark showers) is identical with the class list cut back to
    the original three, the dark-shower settings do not reach other classes, and no other
    sample calls the dark-shower code."""
    cfg = JetConfig()
    three = JetConfig(mixed_fractions={"qcd": 0.4, "darkphoton": 0.35, "top": 0.25})
    zero = JetConfig(mixed_fractions={"qcd": 0.5, "darkphoton": 0.25, "top": 0.25,
                                      "darkshower": 0.0})
    odd = JetConfig(darkshower_mediator_mass_gev=120.0, darkshower_alpha_dark=0.6,
                    darkshower_r_inv=0.9, darkshower_pion_mass_gev=2.0)
    now = {"default": generate(cfg, "mixed", 303, 17), "three": generate(three, "mixed", 301, 3),
           "zero": generate(zero, "mixed", 303, 17), "odd": generate(odd, "mixed", 303, 17)}
    monkeypatch.setattr(jet_physics, "LABEL_NAMES", ("qcd", "darkphoton", "top"))
    before = {"default": generate(cfg, "mixed", 303, 17),
              "three": generate(three, "mixed", 301, 3)}
    for name, ref in (("default", "default"), ("three", "three"), ("zero", "default"),
                      ("odd", "default")):
        for k in before[ref]:
            np.testing.assert_array_equal(now[name][k], before[ref][k], err_msg=f"{name} {k}")
    assert not now["default"]["invisible_pt_fraction"].any()

    def forbidden(*args):
        raise AssertionError("dark-shower code called")

    monkeypatch.setitem(jet_physics._PARTONS, "darkshower", forbidden)
    for sample in ("qcd", "darkphoton", "top", "mixed"):
        generate(cfg, sample, 50, 1)


def test_darkshower_label_shapes_and_seeds():
    cfg = JetConfig()
    a, b, c = (generate(cfg, "darkshower", 200, s) for s in (5, 5, 6))
    assert a["images"].shape == (200, 2, 25, 25) and (a["label"] == LABELS["darkshower"]).all()
    assert LABEL_NAMES.index("darkshower") == 3 and LABEL_NAMES[:3] == ("qcd", "darkphoton", "top")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["images"], c["images"])
    cons = generate_constituents(cfg, "darkshower", 200, 5)
    np.testing.assert_array_equal(make_images(cfg, cons), a["images"])
    np.testing.assert_array_equal(cons["invisible_pt_fraction"].astype(np.float32),
                                  a["invisible_pt_fraction"])


def test_mixed_with_a_darkshower_fraction(tmp_path):
    cfg = JetConfig.from_dict({"mixed_fractions": {"qcd": 0.5, "top": 0.2, "darkphoton": 0.1,
                                                   "darkshower": 0.2}})
    d = generate(cfg, "mixed", 500, 8)
    assert np.bincount(d["label"]).tolist() == [250, 50, 100, 100]
    ds = d["label"] == LABELS["darkshower"]
    assert not d["invisible_pt_fraction"][~ds].any()
    assert 0.1 < d["invisible_pt_fraction"][ds].mean() < 0.3  # some jets lose no meson
    assert (d["n_prongs"][ds] >= 1).all()
    path = write_jets_h5(tmp_path / "ds.h5", cfg, "mixed", 500, 8)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["invisible_pt_fraction"][()], d["invisible_pt_fraction"])
    images, labels, names = read_jet_images(path)
    assert names[3] == "darkshower" and (labels == d["label"]).all()


def test_darkshower_physics(samples):
    """Many prongs, broad, lighter than the mediator (part of it is invisible)."""
    cfg = JetConfig()
    ds, qcd = samples["darkshower"], samples["qcd"]
    assert ds["n_prongs"].mean() > 3 and ds["n_prongs"].mean() > qcd["n_prongs"].mean() + 2
    width = {k: image_observables(samples[k]["images"], cfg.pixel)["width"] for k in samples}
    assert width["darkshower"].mean() > 2 * width["qcd"].mean()
    assert np.median(width["darkshower"]) > 3 * np.median(width["qcd"])
    m, m_x = ds["jet_mass"], cfg.darkshower_mediator_mass_gev
    assert 0.6 * m_x < np.median(m) < m_x and np.median(m) > 2 * np.median(qcd["jet_mass"])
    assert np.median(ds["pixel_mass"]) < m_x
    for kind in ("qcd", "darkphoton", "top"):
        assert not samples[kind]["invisible_pt_fraction"].any()
    assert 0.1 < ds["invisible_pt_fraction"].mean() < 0.3


def test_darkshower_invisible_fraction_follows_r_inv():
    """The dark system does not depend on r_inv (same seed), so the invisible pT at r_inv
    against r_inv = 1 (all dark mesons lost) is the pT-weighted invisible share: r_inv within
    0.03 (statistical spread about 0.01 for 1000 jets)."""
    d = {r: generate(JetConfig(darkshower_r_inv=r), "darkshower", 1000, 12) for r in (0, 0.3, 1)}
    assert not d[0]["invisible_pt_fraction"].any()
    assert (d[1]["n_prongs"] == 1).all() and d[0]["n_prongs"].mean() > 5
    share = d[0.3]["invisible_pt_fraction"].mean() / d[1]["invisible_pt_fraction"].mean()
    assert share == pytest.approx(0.3, abs=0.03)
    assert 0.45 < d[1]["invisible_pt_fraction"].mean() < 0.75  # the dark system's pT share
    # visible mass: about the mediator mass with nothing invisible, falling with r_inv
    m = {r: np.median(v["jet_mass"]) for r, v in d.items()}
    assert m[0] == pytest.approx(200.0, rel=0.08) and m[0] > m[0.3] > m[1]


# ---- files ----------------------------------------------------------------------------------
def test_h5_layout_attributes_and_reproducibility(tmp_path):
    cfg = JetConfig()
    p1, p2 = tmp_path / "a.h5", tmp_path / "b.h5"
    write_jets_h5(p1, cfg, "mixed", 200, 11)
    write_jets_h5(p2, cfg, "mixed", 200, 11)
    assert p1.read_bytes() == p2.read_bytes()
    with h5py.File(p1) as f:
        assert f["images"].shape == (200, 2, 25, 25) and f["images"].dtype == np.float32
        assert f["label"].dtype == np.int64
        for k in ("jet_pt", "jet_eta", "jet_mass", "n_prongs", "had_fraction",
                  "invisible_pt_fraction"):
            assert f[k].shape == (200,)
        assert f["invisible_pt_fraction"].attrs["units"] == ""
        assert json.loads(f.attrs["label_names"]) == list(LABEL_NAMES)
        assert JetConfig.from_dict(json.loads(f.attrs["config"])) == cfg
        assert f.attrs["seed"] == 11 and f.attrs["sample"] == "mixed"
        assert f.attrs["pixel_size"] == pytest.approx(0.1)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.h5", "b.h5"]
    with pytest.raises(TrigkitError, match="exists"):
        write_jets_h5(p1, cfg, "qcd", 10, 1)
    images, labels, names = read_jet_images(p1)
    assert images.shape == (200, 2, 25, 25) and names == LABEL_NAMES and len(labels) == 200


def test_reader_layouts_and_key_guessing(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((12, 30, 30, 3)).astype(np.float64)
    y = np.arange(12) % 3
    np.savez(tmp_path / "cl.npz", X=x, y=y.astype(np.float32))
    images, labels, names = read_jet_images(tmp_path / "cl.npz")
    assert images.shape == (12, 3, 30, 30) and images.dtype == np.float32
    np.testing.assert_array_equal(images[:, 1], x[..., 1].astype(np.float32))
    assert labels.dtype == np.int64 and names == ("class0", "class1", "class2")
    np.savez(tmp_path / "one.npz", jetImage=x[..., 0], labels=np.eye(3, dtype=int)[y])
    images, labels, _ = read_jet_images(tmp_path / "one.npz")
    assert images.shape == (12, 1, 30, 30)
    np.testing.assert_array_equal(labels, y)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["calo"] = np.moveaxis(x, -1, 1)
        f["truth"] = y
        f.attrs["label_names"] = json.dumps(["qcd", "w", "top"])
    images, labels, names = read_jet_images(tmp_path / "c.h5", "calo", "truth")
    assert images.shape == (12, 3, 30, 30) and names == ("qcd", "w", "top")


def _h5(path, **data):
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f[k] = v
    return path


@pytest.mark.parametrize("data, words", [
    ({"pixels": np.zeros((4, 8, 8)), "label": np.zeros(4, int)},
     r"no image dataset.*available: label, pixels"),
    ({"images": np.zeros((4, 8, 8)), "target": np.zeros(4, int)},
     r"no label dataset.*available: images, target"),
    ({"images": np.full((4, 8, 8), np.nan), "label": np.zeros(4, int)}, "NaN or infinite"),
    ({"images": -np.ones((4, 8, 8)), "label": np.zeros(4, int)}, "negative pixels"),
    ({"images": np.zeros((4, 8, 8)), "label": np.zeros(3, int)}, "one label per image"),
    ({"images": np.zeros((4, 8, 8)), "label": np.array([0, 0.5, 1, 1])}, "non-integer"),
    ({"images": np.zeros((4, 8)), "label": np.zeros(4, int)}, "must be"),
])
def test_reader_errors_are_clear(tmp_path, data, words):
    path = _h5(tmp_path / "bad.h5", **data)
    with pytest.raises(TrigkitError, match=words):
        read_jet_images(path)


def test_reader_rejects_missing_and_unknown_files(tmp_path):
    with pytest.raises(TrigkitError, match="not found"):
        read_jet_images(tmp_path / "none.h5")
    (tmp_path / "a.csv").write_text("1,2\n")
    with pytest.raises(TrigkitError, match="unsupported"):
        read_jet_images(tmp_path / "a.csv")
    path = _h5(tmp_path / "k.h5", images=np.zeros((2, 8, 8)), label=np.zeros(2, int))
    with pytest.raises(TrigkitError, match="no image dataset 'x'"):
        read_jet_images(path, images_key="x")


def test_convert_jet_file(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((10, 25, 25, 2)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x, y=np.arange(10) % 2, jet_mass=rng.random(10),
             label_names=np.array(["qcd", "darkphoton"]), pixel_size=np.array(0.1))
    out = convert_jet_file(tmp_path / "in.npz", tmp_path / "out.h5")
    with h5py.File(out) as f:
        assert f["images"].shape == (10, 2, 25, 25) and f["label"].dtype == np.int64
        assert json.loads(f.attrs["label_names"]) == ["qcd", "darkphoton"]
        assert f.attrs["pixel_size"] == pytest.approx(0.1) and f["jet_mass"].shape == (10,)
    images, labels, names = read_jet_images(out)
    np.testing.assert_array_equal(images, np.moveaxis(x, -1, 1))
    with pytest.raises(TrigkitError, match="exists"):
        convert_jet_file(tmp_path / "in.npz", out)
    convert_jet_file(tmp_path / "in.npz", out, overwrite=True)


# ---- preprocessing steps --------------------------------------------------------------------
def _blobs(n=200, m=30, seed=0, phi0=0.0):
    rng = np.random.default_rng(seed)
    eta = rng.normal(0.3, 0.2, (n, m)) + rng.normal(0, 0.5, (n, 1))
    phi = wrap_phi(rng.normal(phi0, 0.2, (n, m)))
    pt = rng.exponential(10.0, (n, m))
    pt[:, -5:] = 0.0  # padding
    return eta, phi, pt


@pytest.mark.parametrize("phi0", [0.4, np.pi - 0.05])
def test_centre_puts_centroid_at_zero_across_phi_wrap(phi0):
    eta, phi, pt = _blobs(phi0=phi0)
    ce, cp = centre(eta, phi, pt)
    np.testing.assert_allclose((ce * pt).sum(1) / pt.sum(1), 0.0, atol=1e-12)
    np.testing.assert_allclose((cp * pt).sum(1) / pt.sum(1), 0.0, atol=1e-12)
    assert np.abs(cp).max() < 2.0  # no particle thrown to the far side by the wrap
    c_eta, c_phi = centroid(ce, cp, pt)
    np.testing.assert_allclose(c_eta, 0, atol=1e-12)
    e0, p0 = centre(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 3)))
    assert np.isfinite(e0).all() and np.isfinite(p0).all()


def test_rotate_aligns_principal_axis_with_eta():
    rng = np.random.default_rng(3)
    t = rng.normal(0, 1, (50, 40))
    ang = rng.uniform(-np.pi, np.pi, (50, 1))
    eta, phi = 0.3 * t * np.cos(ang), 0.3 * t * np.sin(ang)  # points on a line at angle ang
    pt = rng.exponential(1.0, (50, 40))
    eta, phi = centre(eta, phi, pt)
    re, rp = rotate(eta, phi, pt)
    np.testing.assert_allclose(rp, 0.0, atol=1e-9)  # the whole line now lies along eta
    eta, phi, pt = _blobs()
    re, rp = rotate(eta, phi, pt)
    c_eta, c_phi = centroid(re, rp, pt)
    de, dp = re - c_eta[:, None], rp - c_phi[:, None]
    np.testing.assert_allclose((pt * de * dp).sum(1), 0.0, atol=1e-9)
    assert ((pt * de**2).sum(1) >= (pt * dp**2).sum(1)).all()
    np.testing.assert_allclose(principal_angle(re, rp, pt), 0.0, atol=1e-9)


def test_flip_moves_the_maximum_to_the_upper_right_quadrant():
    eta, phi, pt = _blobs(seed=4)
    eta, phi = centre(eta, phi, pt)
    fe, fp = flip(eta, phi, pt)
    quad = np.stack([(pt * ((fe >= 0) == se) * ((fp >= 0) == sp)).sum(1)
                     for se in (True, False) for sp in (True, False)], axis=1)
    assert (quad.argmax(axis=1) == 0).all()
    me, mp = flip(eta, phi, pt, mode="max")
    hard = pt.argmax(axis=1)
    rows = np.arange(len(pt))
    assert (me[rows, hard] >= 0).all() and (mp[rows, hard] >= 0).all()
    np.testing.assert_allclose(np.abs(me), np.abs(eta))  # only reflections
    with pytest.raises(TrigkitError, match="allowed: quadrant, max"):
        flip(eta, phi, pt, mode="skew")


def test_pixelate_adds_and_drops_out_of_window():
    eta = np.array([[0.01, 0.02, -0.31, 2.0, 0.0]])
    phi = np.array([[0.01, 0.04, 0.12, 0.0, -1.3]])
    w = np.array([[1.0, 2.0, 4.0, 8.0, 16.0]])
    img = pixelate(eta, phi, w, 25, 0.1)
    assert img.shape == (1, 25, 25)
    assert img[0, 12, 12] == 3.0  # two particles in one pixel sum
    assert img[0, 9, 13] == 4.0
    assert img.sum() == 7.0  # eta = 2.0 and phi = -1.3 lie outside +-1.25
    eta, phi, pt = _blobs(seed=5)
    img = pixelate(eta, phi, pt, 25, 0.1)
    inside = (np.abs(eta) < 1.25) & (np.abs(phi) < 1.25)
    np.testing.assert_allclose(img.sum(axis=(1, 2)), (pt * inside).sum(1), rtol=1e-12)


def test_crop_is_centred():
    img = np.zeros((2, 3, 9, 9))
    img[:, :, 4, 4] = 1.0
    out = crop(img, 5)
    assert out.shape == (2, 3, 5, 5) and out[0, 0, 2, 2] == 1.0 and out.sum() == 6.0
    with pytest.raises(TrigkitError, match="cannot crop"):
        crop(img, 11)


def test_normalise_unit_sum_and_zero_images():
    rng = np.random.default_rng(6)
    img = rng.random((5, 2, 6, 6)).astype(np.float32)
    img[2] = 0.0
    out = normalise(img)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    sums = out.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(sums[[0, 1, 3, 4]], 1.0, rtol=1e-6)
    assert sums[2] == 0.0


def test_augment_preserves_intensity_and_is_exactly_invertible():
    rng = np.random.default_rng(7)
    img = rng.random((64, 2, 25, 25)).astype(np.float32)
    aug = augment(img, np.random.default_rng(42))
    assert aug.dtype == img.dtype and aug.shape == img.shape
    np.testing.assert_allclose(aug.sum(axis=(1, 2, 3)), img.sum(axis=(1, 2, 3)), rtol=1e-6)
    assert not np.array_equal(aug, img)
    back = apply_symmetries(aug, *symmetry_flags(len(img), np.random.default_rng(42)))
    np.testing.assert_array_equal(back, img)
    reflect, rot = symmetry_flags(len(img), np.random.default_rng(42))
    i = np.flatnonzero(reflect & ~rot)[0]
    np.testing.assert_array_equal(aug[i], img[i][:, ::-1, :])
    codes = (img * 15).astype(np.uint8)  # integer codes keep their dtype
    assert augment(codes, np.random.default_rng(1)).dtype == np.uint8


def test_augment_maps_a_centred_jet_onto_the_same_grid():
    eta, phi, pt = _blobs(seed=8)
    eta, phi = centre(eta, phi, pt)
    img = pixelate(eta, phi, pt, 25, 0.1)
    flipped = pixelate(-eta, -phi, pt, 25, 0.1)  # rotation by pi about the jet axis
    odd = np.abs(np.concatenate([eta, phi]) / 0.1 % 1 - 0.5) > 1e-6  # no pixel-edge ties
    assert odd.all()
    np.testing.assert_allclose(apply_symmetries(img, np.zeros(len(img), bool),
                                                np.ones(len(img), bool)), flipped)


def test_image_observables_from_pixels():
    pixel = 0.1
    img = np.zeros((3, 2, 25, 25))
    img[0, 0, 12, 12] = 100.0  # one pixel: massless
    img[1, 0, 12, 2] = 50.0  # two pixels at delta phi = 1.0 (and 0) eta = 0
    img[1, 1, 12, 12] = 50.0
    obs = image_observables(img, pixel)
    assert obs["pt"].tolist() == [100.0, 100.0, 0.0]
    assert obs["mass"][0] == pytest.approx(0.0, abs=1e-6)
    assert obs["mass"][1] == pytest.approx(np.sqrt(2 * 50 * 50 * (1 - np.cos(1.0))), rel=1e-9)
    assert obs["width"][1] == pytest.approx(0.5) and obs["width"][0] == 0.0
    assert obs["max_pixel"].tolist() == [100.0, 50.0, 0.0]
    assert np.isfinite(np.concatenate(list(obs.values()))).all()
    three = image_observables(img[:, 0], pixel)  # (N, H, W) also accepted
    assert three["pt"][1] == 50.0
