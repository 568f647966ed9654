import numpy as np
import pytest

from trigkit.core.errors import ConfigError, TrigkitError
from trigkit.offline.histograms import (
    HistBinning,
    histogram_events,
    n_signal_events,
    normalise_histograms,
    pseudo_experiments,
    pseudo_experiments_multiclass,
)
from trigkit.offline.monojet import MonojetConfig, generate_monojet


def pool(n: int, seed: int, pt_scale: float = 80.0, eta_sigma: float = 1.3) -> dict:
    rng = np.random.default_rng(seed)
    return {"pt": 200.0 + rng.exponential(pt_scale, n), "eta": rng.normal(0, eta_sigma, n)}


def auc(y: np.ndarray, score: np.ndarray) -> float:
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    n1 = int(y.sum())
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1)))


def test_default_binning():
    b = HistBinning()
    assert b.shape == (20, 10)
    assert b.pt_edges[0] == 200.0 and b.pt_edges[-1] == 1200.0
    assert b.eta_edges[0] == -2.5 and b.eta_edges[-1] == 2.5
    assert np.all(np.diff(b.pt_edges) > 0)
    assert HistBinning.from_dict(b.to_dict()) == b
    with pytest.raises(ConfigError, match="strictly increasing"):
        HistBinning(pt_edges=(200.0, 100.0))
    with pytest.raises(ConfigError, match="at least 2 edges"):
        HistBinning.from_dict({"eta_edges": [0.0]})


@pytest.mark.parametrize("seed", range(5))
def test_counts_conserved_for_random_events(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    pt = rng.uniform(50, 2000, n)  # under- and overflow in pT
    eta = rng.uniform(-3.5, 3.5, n)  # some events outside the eta range
    b = HistBinning()
    h = histogram_events(pt, eta, b)
    assert h.shape == b.shape and h.dtype == np.int64
    inside = (eta >= -2.5) & (eta <= 2.5)
    assert h.sum() == inside.sum()
    # same as numpy with pT clipped into the edge bins
    ref, _, _ = np.histogram2d(np.clip(pt[inside], 200, 1199.999), eta[inside],
                               [b.pt_edges, b.eta_edges])
    np.testing.assert_array_equal(h, ref)


def test_edges_and_flows():
    b = HistBinning(pt_edges=(200.0, 300.0, 400.0), eta_edges=(-1.0, 0.0, 1.0))
    pt = np.array([100.0, 200.0, 300.0, 399.0, 400.0, 1e6, 250.0, 250.0, 250.0])
    eta = np.array([0.5, -1.0, 0.0, -0.5, 1.0, 0.2, -1.0001, 1.0001, 1.0])
    h = histogram_events(pt, eta, b)
    # rows: pT bins, columns: eta bins; eta == upper edge counts in the last bin
    np.testing.assert_array_equal(h, [[1, 2], [1, 3]])
    assert h.sum() == 7
    with pytest.raises(TrigkitError, match="eta has 1 NaN"):
        histogram_events([250.0, 260.0], [0.0, np.nan], b)
    with pytest.raises(TrigkitError, match="different lengths"):
        histogram_events([250.0], [0.0, 0.1], b)


def test_pseudo_experiments_entries_labels_and_determinism():
    bkg, sig = pool(20000, 1), pool(5000, 2, pt_scale=150.0)
    r, z = 400, 2.5
    n_s = n_signal_events(r, z)
    assert n_s == 50
    x, y = pseudo_experiments(bkg, sig, r, z, 60, seed=3)
    assert x.shape == (60, 20, 10) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [30, 30]
    assert 0 < y[:30].sum() < 30  # shuffled, not sorted by class
    np.testing.assert_array_equal(x.sum(axis=(1, 2)), np.full(60, r + n_s))
    x2, y2 = pseudo_experiments(bkg, sig, r, z, 60, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = pseudo_experiments(bkg, sig, r, z, 60, seed=4)
    assert not np.array_equal(x, x3)
    # without matched totals the background-only sets hold r events
    x4, y4 = pseudo_experiments(bkg, sig, r, z, 40, seed=3, match_totals=False,
                                signal_fraction_of_sets=0.25)
    totals = x4.sum(axis=(1, 2))
    assert np.bincount(y4).tolist() == [30, 10]
    assert (totals[y4 == 0] == r).all() and (totals[y4 == 1] == r + n_s).all()


def test_pseudo_experiments_drop_events_outside_eta_and_draw_without_replacement():
    b = HistBinning(pt_edges=(0.0, 1.0), eta_edges=(0.0, 10.0))
    # 10 in-range background events with distinct eta bins, 5 outside
    bkg = {"pt": np.zeros(15), "eta": np.r_[np.arange(10) + 0.5, np.full(5, -1.0)]}
    b10 = HistBinning(pt_edges=(0.0, 1.0), eta_edges=tuple(float(v) for v in range(11)))
    x, _ = pseudo_experiments(bkg, bkg, 10, 0.0, 4, seed=0, binning=b10)
    np.testing.assert_array_equal(x, np.ones((4, 1, 10)))  # every in-range event exactly once
    with pytest.raises(TrigkitError, match=r"background pool has 10 events .* needs 11"):
        pseudo_experiments(bkg, bkg, 11, 0.0, 4, seed=0, binning=b)


def test_pool_errors():
    bkg, sig = pool(1000, 1), pool(10, 2)
    with pytest.raises(TrigkitError, match=r"signal pool has \d+ events .*needs 32.*r = 256"):
        pseudo_experiments(bkg, sig, 256, 2.0, 10, seed=0)
    with pytest.raises(TrigkitError, match=r"background pool has \d+ events .*needs 1032"):
        pseudo_experiments(bkg, pool(100, 2), 1000, 1.0, 10, seed=0)
    with pytest.raises(TrigkitError, match="'pt' and 'eta'"):
        pseudo_experiments({"pt": bkg["pt"]}, sig, 10, 1.0, 10, seed=0)
    with pytest.raises(TrigkitError, match="r .* must be an integer >= 1"):
        pseudo_experiments(bkg, sig, 0, 1.0, 10, seed=0)


def test_multiclass():
    bkg = pool(5000, 1)
    signals = {"a": pool(500, 2, pt_scale=120.0), "b": pool(500, 3, eta_sigma=0.7)}
    x, y = pseudo_experiments_multiclass(bkg, signals, 100, 3.0, 7, seed=1)
    assert x.shape == (21, 20, 10) and np.bincount(y).tolist() == [7, 7, 7]
    np.testing.assert_array_equal(x.sum(axis=(1, 2)), np.full(21, 130))
    x2, y2 = pseudo_experiments_multiclass(bkg, signals, 100, 3.0, 7, seed=1)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    with pytest.raises(TrigkitError, match="signal 'a' pool"):
        pseudo_experiments_multiclass(bkg, {"a": pool(5, 2)}, 100, 3.0, 7, seed=1)


def test_normalise_histograms():
    h = np.array([[[1.0, 3.0]], [[0.0, 0.0]]])
    np.testing.assert_allclose(normalise_histograms(h, 4), [[[0.25, 0.75]], [[0, 0]]])
    np.testing.assert_allclose(normalise_histograms(h), [[[0.25, 0.75]], [[0, 0]]])
    assert normalise_histograms(h).dtype == np.float32
    np.testing.assert_allclose(normalise_histograms(np.array([[2.0, 2.0]])), [[0.5, 0.5]])


def test_auc_depends_on_s_over_sqrt_b_not_on_b():
    """With the per-event log-likelihood ratio summed over the histogram, the AUC of SM vs
    SM + signal grows with S/sqrt(B) and is about the same for different background sizes."""
    cfg = MonojetConfig()
    b = HistBinning()
    sm, sg = generate_monojet(cfg, "sm", 60000, 1), generate_monojet(cfg, "alp_gg", 20000, 1)
    ref_b = generate_monojet(cfg, "sm", 100000, 2)
    ref_s = generate_monojet(cfg, "alp_gg", 100000, 2)
    tb = histogram_events(ref_b["jet_pt"], ref_b["jet_eta"], b) + 0.5
    ts = histogram_events(ref_s["jet_pt"], ref_s["jet_eta"], b) + 0.5
    w = np.log((ts / ts.sum()) / (tb / tb.sum()))
    bkg = {"pt": sm["jet_pt"], "eta": sm["jet_eta"]}
    sig = {"pt": sg["jet_pt"], "eta": sg["jet_eta"]}
    aucs = {}
    for r in (250, 1000, 4000):
        for z in (1.0, 3.0):
            x, y = pseudo_experiments(bkg, sig, r, z, 600, seed=r)
            aucs[r, z] = auc(y, (x * w).sum(axis=(1, 2)))
    for r in (250, 1000, 4000):
        assert aucs[r, 3.0] > aucs[r, 1.0] + 0.1
    for z in (1.0, 3.0):
        vals = [aucs[r, z] for r in (250, 1000, 4000)]
        assert max(vals) - min(vals) < 0.08, aucs


def test_poisson_significance_direct_and_calibrated():
    from trigkit.offline.histograms import background_shape, poisson_significance

    h = np.array([[[3.0, 1.0], [0.0, 6.0]]])
    p = np.array([[0.25, 0.25], [0.0, 0.5]])
    z = poisson_significance(h, p)
    mu = 10 * p
    expected = (h[0] - mu) / np.sqrt(np.maximum(mu, 1.0))
    np.testing.assert_allclose(z[0], expected, rtol=1e-6)
    # background-only histograms drawn from the shape: about N(0, 1) in every populated bin
    rng = np.random.default_rng(0)
    pt = rng.uniform(200, 1200, 200_000)
    eta = rng.uniform(-2.4, 2.4, 200_000)
    shape = background_shape({"pt": pt, "eta": eta})
    assert shape.sum() == pytest.approx(1.0)
    counts = rng.multinomial(4000, shape.ravel(), size=3000).reshape(3000, *shape.shape)
    z = poisson_significance(counts, shape)
    populated = shape * 4000 > 20
    assert abs(z[:, populated].mean()) < 0.02
    assert z[:, populated].std() == pytest.approx(1.0, abs=0.03)
    with pytest.raises(Exception, match="do not match the background shape"):
        poisson_significance(counts[:, :3], shape)
