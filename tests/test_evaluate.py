import math

import numpy as np
import pytest

from trigkit.core import plots
from trigkit.l0.baseline import turn_on
from trigkit.learn.metrics import (
    accuracy,
    confusion_matrix,
    core_gaussian_fit,
    cut_at_fake_rate,
    multiclass_auc,
    regression_metrics,
    roc_auc,
    roc_curve,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def pairwise_auc(is_signal: np.ndarray, score: np.ndarray) -> float:
    """Direct O(n^2) definition: P(s_sig > s_bkg) + 1/2 P(s_sig == s_bkg)."""
    s, b = score[is_signal], score[~is_signal]
    diff = s[:, None] - b[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


# ------------------------------------------------------------------------------ classification


def test_accuracy_and_length_check():
    assert accuracy(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2])) == 0.75
    with pytest.raises(ValueError, match="labels and predicted"):
        accuracy(np.array([0, 1]), np.array([0, 1, 1]))


def test_confusion_matrix_counts_rows_are_true_class():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2])
    cm = confusion_matrix(labels, pred, 3)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 1, 1], [1, 0, 3]])
    assert cm.sum() == labels.size
    assert np.trace(cm) / cm.sum() == accuracy(labels, pred)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(labels, pred, 2)
    with pytest.raises(ValueError, match="labels and predicted"):
        confusion_matrix(labels, pred[:-1], 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_pairwise_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 600
    is_signal = rng.random(n) < 0.3
    # coarse integer scores: many ties, both within and across classes
    score = rng.integers(0, 8, n) + 2 * is_signal
    expected = pairwise_auc(is_signal, score.astype(float))
    assert roc_auc(is_signal, score) == pytest.approx(expected, abs=1e-12)
    # the area under the exact, tie-aware curve is the same number
    fpr, tpr, _ = roc_curve(is_signal, score)
    assert np.trapezoid(tpr, fpr) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_edge_cases():
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
    assert roc_auc(np.array([1, 1, 0, 0]), np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert roc_auc(np.array([1, 0]), np.array([0.5, 0.5])) == 0.5
    assert math.isnan(roc_auc(np.ones(5, bool), np.arange(5.0)))
    assert math.isnan(roc_auc(np.zeros(5, bool), np.arange(5.0)))
    with pytest.raises(ValueError, match="is_signal and score"):
        roc_auc(np.array([1, 0, 1]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="0/1"):
        roc_auc(np.array([1, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="non-finite"):
        roc_auc(np.array([1, 0]), np.array([np.nan, 0.2]))


def test_roc_curve_end_points_monotonic_and_exact():
    rng = np.random.default_rng(5)
    is_signal = rng.random(500) < 0.4
    score = np.round(rng.normal(is_signal.astype(float), 1.0), 1)  # rounded: ties
    fpr, tpr, thr = roc_curve(is_signal, score)
    assert (fpr[0], tpr[0], thr[0]) == (0.0, 0.0, np.inf)
    assert (fpr[-1], tpr[-1], thr[-1]) == (1.0, 1.0, score.min())
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.all(np.diff(thr) < 0)
    assert thr.size == np.unique(score).size + 1  # one point per distinct score
    for f, t, c in zip(fpr[1:], tpr[1:], thr[1:], strict=True):  # pass means score >= threshold
        assert t == np.mean(score[is_signal] >= c)
        assert f == np.mean(score[~is_signal] >= c)


def test_roc_curve_small_example():
    fpr, tpr, thr = roc_curve(np.array([1, 0, 1, 0]), np.array([0.9, 0.9, 0.5, 0.1]))
    np.testing.assert_array_equal(fpr, [0, 0.5, 0.5, 1])
    np.testing.assert_array_equal(tpr, [0, 0.5, 1, 1])
    np.testing.assert_array_equal(thr, [np.inf, 0.9, 0.5, 0.1])


def test_multiclass_auc_perfect_random_and_missing_class():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 4000)
    perfect = np.eye(4)[labels] * 0.7 + rng.random((4000, 4)) * 0.3
    res = multiclass_auc(labels, perfect)
    assert res["macro"] == 1.0 and res["per_class"] == [1.0] * 4
    noise = rng.dirichlet(np.ones(4), 4000)
    res = multiclass_auc(labels, noise)
    assert res["macro"] == pytest.approx(0.5, abs=0.03)
    assert all(abs(a - 0.5) < 0.05 for a in res["per_class"])
    res = multiclass_auc(labels % 3, perfect)  # class 3 absent
    assert math.isnan(res["per_class"][3])
    assert res["macro"] == pytest.approx(np.mean(res["per_class"][:3]))
    with pytest.raises(ValueError, match="labels and probs"):
        multiclass_auc(labels[:-1], perfect)


def test_cut_at_fake_rate_exact_counts():
    rng = np.random.default_rng(0)
    bkg = rng.permutation(np.arange(100.0))
    for rate, n_pass in ((0.1, 10), (0.29, 29), (0.005, 0), (1.0, 100)):
        t = cut_at_fake_rate(bkg, rate)
        assert np.count_nonzero(bkg >= t) == n_pass, rate
    assert cut_at_fake_rate(bkg, 0.1) == 90.0
    assert cut_at_fake_rate(bkg, 1.0) == 0.0
    t0 = cut_at_fake_rate(bkg, 0.0)
    assert t0 == np.nextafter(99.0, np.inf) and t0 > 99.0
    assert not np.any(bkg >= t0)


def test_cut_at_fake_rate_ties():
    bkg = np.array([1.0, 2.0, 3.0, 3.0, 3.0, 4.0])
    assert cut_at_fake_rate(bkg, 4 / 6) == 3.0  # 4 of 6 pass at t = 3
    assert cut_at_fake_rate(bkg, 0.5) == 4.0  # t = 3 would pass 4/6 > 0.5: the tie moves the cut
    assert cut_at_fake_rate(bkg, 1 / 6) == 4.0
    assert cut_at_fake_rate(bkg, 0.1) == np.nextafter(4.0, np.inf)  # even t = 4 passes 1/6
    assert cut_at_fake_rate(bkg, 0.0) == np.nextafter(4.0, np.inf)
    # smallest: the next lower background score already exceeds the fake rate
    for rate in (0.2, 0.5, 0.7, 0.9):
        t = cut_at_fake_rate(bkg, rate)
        assert np.mean(bkg >= t) <= rate
        lower = bkg[bkg < t]
        assert lower.size == 0 or np.mean(bkg >= lower.max()) > rate
    with pytest.raises(ValueError, match="fake_rate"):
        cut_at_fake_rate(bkg, 1.5)
    with pytest.raises(ValueError, match="empty"):
        cut_at_fake_rate(np.array([]), 0.1)


# ------------------------------------------------------------------------------------ regression


def test_core_gaussian_fit_recovers_core_under_wide_tails():
    rng = np.random.default_rng(11)
    core = rng.normal(1.5, 3.0, 16000)
    tails = rng.normal(0.0, 15.0, 4000)  # 20 % of all events in tails 5x wider
    fit = core_gaussian_fit(rng.permutation(np.r_[core, tails]))
    assert fit["converged"] and fit["method"] == "fit"
    # statistical error ~0.03 on both; tails under the core bias sigma up by a few percent
    assert fit["mean"] == pytest.approx(1.5, abs=0.12)
    assert fit["sigma"] == pytest.approx(3.0, rel=0.08)
    assert 0.01 < fit["mean_err"] < 0.06 and 0.01 < fit["sigma_err"] < 0.06
    assert 14000 < fit["n_core"] < 18000
    # the plain standard deviation is far off: the fit is doing the work
    assert np.std(np.r_[core, tails]) > 2 * 3.0


def test_core_gaussian_fit_pure_gaussian_and_validation():
    rng = np.random.default_rng(12)
    x = rng.normal(-2.0, 0.5, 5000)
    fit = core_gaussian_fit(np.r_[x, np.nan, np.inf])  # non-finite entries are ignored
    assert fit["converged"]
    assert fit["mean"] == pytest.approx(-2.0, abs=0.03)
    assert fit["sigma"] == pytest.approx(0.5, rel=0.04)
    with pytest.raises(ValueError, match="at least 10"):
        core_gaussian_fit(np.r_[np.arange(9.0), np.nan])


def test_regression_metrics_known_arrays():
    true = np.linspace(0, 100, 20)
    residual = np.r_[[1.0, -1.0] * 8, 10.0, -10.0, 0.0, 0.0]
    pred = true + residual
    pred[-2:] = np.nan  # two failed predictions
    m = regression_metrics(pred, true)
    assert m["n"] == 20 and m["n_failed"] == 2
    assert m["tail_frac_8cm"] == pytest.approx(4 / 20)  # 2 beyond 8 cm + 2 failures
    assert m["rms_cm"] == pytest.approx(math.sqrt((16 * 1 + 2 * 100) / 18))
    assert m["median_abs_cm"] == pytest.approx(1.0)
    assert np.isfinite(m["sigma_core_cm"]) and np.isfinite(m["mean_cm"])
    m12 = regression_metrics(pred, true, tail_cut=12.0)
    assert m12["tail_frac_12cm"] == pytest.approx(2 / 20)
    with pytest.raises(ValueError, match="predicted and true"):
        regression_metrics(pred[:-1], true)
    with pytest.raises(ValueError, match="true contains non-finite"):
        regression_metrics(pred, np.r_[true[:-1], np.nan])


def test_regression_metrics_gaussian_resolution():
    rng = np.random.default_rng(4)
    true = rng.uniform(0, 400, 20000)
    pred = true + rng.normal(0.3, 2.0, true.size)
    m = regression_metrics(pred, true)
    assert m["sigma_core_cm"] == pytest.approx(2.0, rel=0.04)
    assert m["mean_cm"] == pytest.approx(0.3, abs=0.05)
    assert m["rms_cm"] == pytest.approx(math.hypot(2.0, 0.3), rel=0.03)
    assert m["tail_frac_8cm"] < 1e-3
    few = regression_metrics(pred[:5], true[:5])  # too few for a core fit: NaN, not an error
    assert math.isnan(few["sigma_core_cm"]) and few["n"] == 5


# ----------------------------------------------------------------------------------------- plots


def assert_png(path, returned) -> None:
    assert returned == path
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert plots.plt.get_fignums() == []  # the figure was closed


def test_plot_training_history(tmp_path):
    hist = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1) + 0.05,
             "val_accuracy": 0.5 + 0.04 * e, "val_auc": 0.6 + 0.03 * e, "lr": 1e-3 * 0.8**e,
             "note": "text is ignored"} for e in range(10)]
    p = tmp_path / "history.png"
    assert_png(p, plots.plot_training_history(hist, p))
    p2 = tmp_path / "history_losses_only.png"
    assert_png(p2, plots.plot_training_history([{"epoch": 0, "train_loss": 0.5, "val_loss": 0.6}],
                                               p2))
    with pytest.raises(ValueError, match="empty"):
        plots.plot_training_history([], tmp_path / "none.png")


def test_plot_roc(tmp_path):
    rng = np.random.default_rng(1)
    sig = rng.random(2000) < 0.5
    curves = {}
    for name, sep in (("float", 2.0), ("ternary", 1.5)):
        score = rng.normal(sep * sig, 1.0)
        fpr, tpr, _ = roc_curve(sig, score)
        curves[name] = (fpr, tpr, roc_auc(sig, score))
    p = tmp_path / "roc.png"
    assert_png(p, plots.plot_roc(curves, p, title="test", points={"standard": (0.1, 0.6)}))
    p_log = tmp_path / "roc_log.png"
    assert_png(p_log, plots.plot_roc(curves, p_log, points={"standard": (0.1, 0.6)}, log_x=True))


def test_plot_confusion(tmp_path):
    cm = np.array([[50, 3, 1, 0], [4, 40, 6, 0], [2, 5, 30, 0], [0, 0, 0, 0]])
    names = ["noise", "prompt", "nonpointing", "darkphoton"]
    for normalise in (True, False):
        p = tmp_path / f"cm_{normalise}.png"
        assert_png(p, plots.plot_confusion(cm, names, p, normalise=normalise))
    with pytest.raises(ValueError, match="class_names"):
        plots.plot_confusion(cm, names[:3], tmp_path / "bad.png")


def test_plot_efficiency_vs_pt(tmp_path):
    rng = np.random.default_rng(2)
    pt = rng.uniform(3, 50, 4000)
    edges = np.arange(3.0, 52.0, 2.0)
    series = {}
    for name, thr in (("network prompt", 18), ("baseline prompt", 20),
                      ("network non-pointing", 22), ("baseline non-pointing", 25)):
        passed = rng.random(pt.size) < 0.95 / (1 + np.exp(-(pt - thr) / 1.5))
        series[name] = turn_on(pt, passed, edges)
    series["empty bins"] = turn_on(pt, pt > 20, np.array([0.0, 1.0, 2.0, 60.0]))  # NaN bins
    p = tmp_path / "eff.png"
    assert_png(p, plots.plot_efficiency_vs_pt(series, p, threshold_gev=20.0, title="test"))


def test_plot_residuals(tmp_path):
    rng = np.random.default_rng(3)
    series = {"float": np.r_[rng.normal(0, 3, 3000), rng.normal(0, 20, 600), np.nan],
              "ternary": np.r_[rng.normal(1, 4, 3000), rng.normal(0, 25, 600)]}
    fit = {k: core_gaussian_fit(v) for k, v in series.items()}
    p = tmp_path / "res.png"
    assert_png(p, plots.plot_residuals(series, p, fit=fit, xlabel="vertex R residual [cm]"))
    p2 = tmp_path / "res_nofit.png"
    assert_png(p2, plots.plot_residuals(series, p2, log_y=True))


def test_plot_regression_scatter(tmp_path):
    rng = np.random.default_rng(4)
    true = rng.uniform(0, 400, 3000)
    pred = true + rng.normal(0, 5, true.size)
    pred[:10] = np.nan
    p = tmp_path / "scatter.png"
    assert_png(p, plots.plot_regression_scatter(true, pred, p, label="vertex R [cm]"))
