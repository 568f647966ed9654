"""Mass decorrelation: distance correlation (torch vs independent numpy), adversary, 1/JSD."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from trigkit.core.errors import TrigkitError
from trigkit.learn.decorrelate import (
    MassAdversary,
    adversary_loss,
    distance_correlation,
    distance_correlation_numpy,
    inverse_jsd_at_background_efficiency,
    jensen_shannon_divergence,
    mass_bins,
)


def dcor2_loops(x, y) -> float:
    """Székely's dCor^2 with plain loops (a third, independent implementation)."""
    n = len(x)

    def centred(v):
        d = [[abs(v[j] - v[k]) for k in range(n)] for j in range(n)]
        row = [sum(d[j]) / n for j in range(n)]
        col = [sum(d[j][k] for j in range(n)) / n for k in range(n)]
        grand = sum(row) / n
        return [[d[j][k] - row[j] - col[k] + grand for k in range(n)] for j in range(n)]

    a, b = centred(list(x)), centred(list(y))

    def v2(p, q):
        return sum(p[j][k] * q[j][k] for j in range(n) for k in range(n)) / n**2

    return v2(a, b) / (v2(a, a) * v2(b, b)) ** 0.5


def test_numpy_matches_plain_loops(rng):
    x = rng.normal(size=15)
    y = x**2 + 0.3 * rng.normal(size=15)
    assert distance_correlation_numpy(x, y) == pytest.approx(dcor2_loops(x, y), rel=1e-12)


def test_torch_matches_numpy(rng):
    x = rng.normal(size=300)
    y = np.exp(0.5 * x) + rng.normal(size=300)
    ref = distance_correlation_numpy(x, y)
    got = distance_correlation(torch.tensor(x), torch.tensor(y))
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(ref, rel=1e-6)
    got32 = distance_correlation(torch.tensor(x, dtype=torch.float32),
                                 torch.tensor(y, dtype=torch.float32))
    assert float(got32) == pytest.approx(ref, rel=1e-4)
    # (N, 1) inputs, power and symmetry
    assert float(distance_correlation(torch.tensor(x)[:, None], torch.tensor(y))) == \
        pytest.approx(ref, rel=1e-9)
    assert float(distance_correlation(torch.tensor(y), torch.tensor(x))) == \
        pytest.approx(ref, rel=1e-9)
    assert float(distance_correlation(torch.tensor(x), torch.tensor(y), power=2)) == \
        pytest.approx(ref**2, rel=1e-9)


def test_weights(rng):
    x, y = rng.normal(size=40), rng.normal(size=40)
    x[:20] += y[:20]
    tx, ty = torch.tensor(x), torch.tensor(y)
    plain = float(distance_correlation(tx, ty))
    assert float(distance_correlation(tx, ty, weights=torch.full((40,), 3.0))) == \
        pytest.approx(plain, rel=1e-12)
    # integer weights are the same as repeating the events
    w = rng.integers(1, 4, size=40)
    weighted = float(distance_correlation(tx, ty, weights=torch.tensor(w, dtype=torch.float64)))
    assert weighted == pytest.approx(distance_correlation_numpy(np.repeat(x, w), np.repeat(y, w)),
                                     rel=1e-9)
    assert abs(weighted - plain) > 1e-4


def test_known_cases(rng):
    n = 2000
    x = rng.uniform(-1, 1, size=n)
    assert distance_correlation_numpy(x, rng.uniform(-1, 1, size=n)) < 0.01
    assert distance_correlation_numpy(x, x) == pytest.approx(1.0, rel=1e-12)
    assert distance_correlation_numpy(x, -3.0 * x + 2.0) == pytest.approx(1.0, rel=1e-12)
    assert float(distance_correlation(torch.tensor(x[:500]), torch.tensor(7 * x[:500] - 1))) == \
        pytest.approx(1.0, rel=1e-9)
    y = x**2  # dependent but uncorrelated
    assert abs(np.corrcoef(x, y)[0, 1]) < 0.05
    assert distance_correlation_numpy(x, y) > 0.1
    assert float(distance_correlation(torch.ones(10), torch.arange(10.0))) == 0.0


def test_gradients_and_penalty_minimisation():
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: distance_correlation(v, y), (x,))
    # a score built from a mass-correlated and an independent feature: minimising dCor^2 with
    # the mass drives the mass coefficient to zero
    g = torch.Generator().manual_seed(0)
    mass, other = torch.rand(256, generator=g), torch.rand(256, generator=g)
    coef = torch.tensor([1.0, 1.0], requires_grad=True)
    opt = torch.optim.Adam([coef], lr=0.05)
    start = distance_correlation(coef[0] * mass + coef[1] * other, mass).item()
    for _ in range(150):
        loss = distance_correlation(coef[0] * mass + coef[1] * other, mass)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * start
    assert abs(coef[0].item()) < 0.2 * abs(coef[1].item())


def test_distance_correlation_errors():
    with pytest.raises(TrigkitError, match="different lengths"):
        distance_correlation(torch.zeros(3), torch.zeros(4))
    with pytest.raises(TrigkitError, match="1-D batch"):
        distance_correlation(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(TrigkitError, match="weights"):
        distance_correlation(torch.zeros(3), torch.zeros(3), weights=torch.ones(2))


def test_mass_bins(rng):
    mass = rng.uniform(20, 300, size=1000)
    edges, idx = mass_bins(mass, 10)
    assert len(edges) == 11 and idx.min() == 0 and idx.max() == 9
    assert np.all(np.abs(np.bincount(idx) - 100) <= 1)
    # the trainer's lookup of new masses agrees with the training assignment
    trainer_idx = np.clip(np.searchsorted(edges[1:-1], mass, side="right"), 0, len(edges) - 2)
    np.testing.assert_array_equal(idx, trainer_idx)
    with pytest.raises(TrigkitError, match="not finite"):
        mass_bins(np.array([1.0, np.nan, 2.0, 3.0]), 2)
    with pytest.raises(TrigkitError, match="fewer bins"):
        mass_bins(np.arange(3.0), 5)


def test_adversary_learns_mass_from_a_sculpting_score(rng):
    torch.manual_seed(0)
    mass = rng.uniform(0, 1, size=512)
    _, bins = mass_bins(mass, 4)
    target = torch.as_tensor(bins)
    adv = MassAdversary(n_bins=4, hidden=16)
    score = torch.tensor(mass, dtype=torch.float32)[:, None]
    assert adv(score).shape == (512, 4)
    start = adversary_loss(adv, score, target).item()
    assert start == pytest.approx(np.log(4), abs=0.3)
    opt = torch.optim.Adam(adv.parameters(), lr=1e-2)
    for _ in range(150):
        loss = adversary_loss(adv, score, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * np.log(4)  # the score gives the mass bin away
    # the model step's loss sends gradients to the score through the adversary
    s = score.clone().requires_grad_(True)
    (-adversary_loss(adv, s[:, 0], bins)).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_jensen_shannon_divergence(rng):
    assert jensen_shannon_divergence([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-15)
    assert jensen_shannon_divergence([1, 1, 0, 0], [0, 0, 3, 1]) == pytest.approx(1.0)
    p = rng.integers(0, 5, size=20).astype(float)
    q = rng.integers(0, 5, size=20).astype(float)
    p[3] = q[3] = 0
    p[5], q[6] = 0, 0
    assert jensen_shannon_divergence(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2,
                                                            rel=1e-10)
    with pytest.raises(TrigkitError, match="same bin edges"):
        jensen_shannon_divergence([1, 2], [1, 2, 3])
    with pytest.raises(TrigkitError, match="empty"):
        jensen_shannon_divergence([0, 0], [1, 2])


def test_inverse_jsd_sculpting_metric(rng):
    n = 100_000
    mass = rng.exponential(50.0, size=n) + 20.0
    independent = inverse_jsd_at_background_efficiency(rng.normal(size=n), mass, 0.5)
    sculpting = inverse_jsd_at_background_efficiency(mass, mass, 0.5)
    partial = inverse_jsd_at_background_efficiency(np.log(mass) + rng.normal(size=n), mass, 0.5)
    assert independent > 500
    assert 1.0 <= sculpting < 1.2  # pass and fail are disjoint in mass: JSD ~ 1
    assert sculpting < partial < independent
    edges = np.linspace(20, 400, 30)
    assert inverse_jsd_at_background_efficiency(mass, mass, 0.3, bins=edges) < 1.2
    with pytest.raises(TrigkitError, match="bkg_eff"):
        inverse_jsd_at_background_efficiency(mass, mass, 1.5)
    with pytest.raises(TrigkitError, match="constant"):
        inverse_jsd_at_background_efficiency(np.ones(100), mass[:100], 0.5)
