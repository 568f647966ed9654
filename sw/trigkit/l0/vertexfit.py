"""Analytic baseline for dimuon vertex-radius regression: fit two tracks, intersect them.

Method (vectorised over events, in batches of events with similar numbers of clusters):

1. Clusters: runs of adjacent fired strips in a row. A cluster's position is its centre in
   continuous column units (strip ``c`` spans ``[c, c + 1)``), converted to the hit point
   ``z = R sinh(eta)`` at the row's radius ``R``; its error is ``width / sqrt(12)`` strips.
2. Layer choice: tracks are *found* as straight lines in the field-free rows (BI, R < 6 m,
   after the calorimeter scatterer at 4 m, so straight there) and in the rows up to 2 m into
   the field (BM), where pT >= 20 GeV muons bend by < 0.5 strip, so a straight line with a
   one-strip road finds them. That small bend still matters for the vertex (ignoring it costs
   about 6 cm median radius error even for ideal hits), so the *final* fit also uses the
   outer rows (BO, bent by 1-2.5 strips) and fits
   ``z = a + b R - k (1 + b^2)^(3/2) / 2 * max(R - R_field, 0)^2``: the small-curvature
   expansion of a circle of signed curvature ``k = q 0.3 B / p`` that leaves the field-free
   line tangentially at the field boundary. It is linear in (a, b, k); a loose Gaussian prior
   on ``k`` (p >= 10 GeV) keeps it defined without BO hits. ``a + b R`` is the track before
   the field.
3. Track finding: every pair of seed clusters (one in the OR of the field-free rows, one in
   the OR of a middle station's rows; the seed clusters that fired most rows first) defines
   a line. In every finding row the nearest cluster inside a road is picked, the line
   refitted, the hits picked again with a tighter road and refitted; the cheapest candidates
   (``chi2 + MISS_COST * missing rows``) are extended to the outer rows, refitted with the
   curved model and cleaned of outlier hits (noise picked where the muon left no hit).
4. Pairing: the two tracks are the pair of candidates with the lowest summed cost that share
   no middle-row cluster, have different clusters in at least one row beyond the field (not
   two halves of one track) and do not cross outside the innermost row (impossible for two
   tracks from one vertex). They may share field-free clusters (``MISS_COST`` each): the
   muons merge there when the vertex is close to BI. In the field-free rows the clusters are
   then re-assigned by order (tracks from one vertex do not cross after it: the track lower
   in column at the middle rows takes the lower cluster), and a cluster used by both is split
   into its edge strips when it is wider than one strip.
5. The final curved fit shares each station's weight among its rows (their quantisation
   errors are almost fully correlated); the vertex is the intersection of the two lines
   ``a + b R`` in the R-z plane.

The resolution is set by physics more than by the fit: the radius error is about
``sqrt(dz1^2 + dz2^2) / opening angle``, where ``dz`` is a track's position error at the
vertex: strip quantisation extrapolated inwards (a few mm) and the multiple-scattering kick at
4 m that no hit after it can undo. With opening angles of 0.05 to 0.2 rad this gives
centimetres to tens of centimetres. ``r_err_cm`` is the quantisation part per event.

Longer than 500 lines: one track-finding and fitting algorithm whose stages share
the private geometry and sparse-hit helpers above them; splitting it would export those.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from trigkit.core.errors import TrigkitError

from .detector import DetectorConfig

#: Events processed together. Events are sorted by their number of clusters first, so small
#: batches keep the padding (events x seeds x rows x cluster slots) tight; 128 is fastest.
BATCH_EVENTS = 128
#: Cluster slots kept per row (lowest columns first) and seed clusters kept per station (most
#: fired rows first); the rest are dropped (only in very noisy events).
MAX_CLUSTERS = 12
MAX_SEEDS = 8
#: Rows up to this far beyond the field boundary (m) are used to find tracks as straight lines.
FINDING_DEPTH_M = 2.0
#: Road half-widths in strips (distance from the predicted column to the nearest cluster
#: edge): around the seed line, around the refitted line, around the line extrapolated to the
#: outer rows (which bend by up to a few strips).
ROAD_SEED = 3.0
ROAD_FIT = 1.0
ROAD_OUTER = 5.0
#: A hit whose chi2 contribution to the curved fit exceeds this is dropped as an outlier (noise
#: picked up in a row where the muon left no hit), at most this many times per track.
OUTLIER_CHI2 = 16.0
OUTLIER_PASSES = 2
#: Cost of a finding row without a hit (and of a field-free cluster shared by both tracks).
MISS_COST = 9.0
#: Minimum hits of a track in the field-free rows and in the middle rows.
MIN_INNER_HITS = 1
MIN_MIDDLE_HITS = 2
#: Cheapest distinct candidates per event among which the best pair is chosen.
TOP_CANDIDATES = 10
#: Two tracks may cross at most this far (m) outside the innermost row.
CROSS_MARGIN_M = 0.3
#: Momentum (GeV) setting the width of the Gaussian prior on the curvature in the field.
CURVATURE_PRIOR_P_GEV = 10.0
#: Lines whose slopes dz/dR differ by less than this many standard deviations (strip
#: quantisation) are parallel: no vertex.
MIN_SLOPE_SIGNIFICANCE = 3.0


def _check_hits(hits: np.ndarray, det: DetectorConfig) -> np.ndarray:
    if not isinstance(hits, np.ndarray):
        raise TrigkitError(f"hit images must be a numpy array, got {type(hits).__name__}")
    if hits.ndim != 3 or hits.shape[1:] != det.image_shape:
        raise TrigkitError(
            f"hit images have shape {hits.shape} but the detector expects (N, "
            f"{det.image_shape[0]}, {det.image_shape[1]})"
        )
    if hits.dtype != np.bool_ and not np.issubdtype(hits.dtype, np.integer):
        raise TrigkitError(
            f"hit images must be binary uint8 or bool, got dtype {hits.dtype}; "
            "threshold and cast them first, e.g. (x > 0.5).astype(np.uint8)"
        )
    return hits


def _nonzero(hits: np.ndarray) -> np.ndarray:
    """Flat indices of the fired strips (fast for sparse uint8/bool images)."""
    if hits.dtype.itemsize != 1:
        hits = hits != 0
    flat = np.ascontiguousarray(hits).reshape(-1).view(np.uint8)
    if flat.size % 8:
        return np.flatnonzero(flat)
    words = np.flatnonzero(flat.view(np.uint64))
    sub = np.flatnonzero(flat.reshape(-1, 8)[words])
    return words[sub // 8] * 8 + sub % 8


def _runs(keys: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of adjacent strips from sorted unique ``keys = line * width + column``.

    Returns the line of each run, its first column and its end column (exclusive).
    """
    if keys.size == 0:
        return keys, keys, keys
    first = _run_starts(keys, width)
    last = np.append(first[1:], keys.size) - 1
    return keys[first] // width, keys[first] % width, keys[last] % width + 1


def _run_starts(keys: np.ndarray, width: int) -> np.ndarray:
    """Positions in sorted unique ``keys`` where a run of adjacent strips starts."""
    new = np.ones(keys.size, bool)
    new[1:] = (np.diff(keys) != 1) | (keys[1:] % width == 0)
    return np.flatnonzero(new)


class _Geometry:
    """Row roles and coordinate conversions derived from the detector configuration."""

    def __init__(self, det: DetectorConfig) -> None:
        self.det = det
        self.radii = np.asarray(det.layer_radii_m, dtype=np.float64)
        rf = det.field_start_m
        self.r_field = rf
        self.inner = np.flatnonzero(self.radii < rf)
        self.middle = np.flatnonzero((self.radii >= rf) & (self.radii <= rf + FINDING_DEPTH_M))
        self.outer = np.flatnonzero(self.radii > rf + FINDING_DEPTH_M)
        if self.inner.size == 0 or self.middle.size == 0:
            raise TrigkitError(
                "fit_vertex needs rows inside the field boundary and rows within "
                f"{FINDING_DEPTH_M:g} m beyond it (field_start_m = {rf:g} m, radii "
                f"{tuple(det.layer_radii_m)})"
            )
        self.finding = np.concatenate([self.inner, self.middle])
        # Seed stations: all field-free rows together; the middle rows grouped by station.
        of_row = det.station_of_row()
        groups: dict[str, list[int]] = {}
        for r in self.middle:
            groups.setdefault(of_row.get(int(r), f"row{r}"), []).append(int(r))
        self.seed_groups = [[int(r) for r in self.inner], *groups.values()]
        self.seed_radii = [float(self.radii[g].mean()) for g in self.seed_groups]
        # Station of every fitted row (finding rows, then outer rows), for correlated errors.
        names = [of_row.get(int(r), f"row{r}") for r in np.concatenate([self.finding, self.outer])]
        self.same_station = np.equal.outer(names, names).astype(np.float64)
        self.r_ref = float(self.radii[self.finding].mean())  # fit reference radius
        self.r_cross = float(self.radii[self.inner].max()) + CROSS_MARGIN_M
        self.sigma_k = 0.299792458 * max(det.field_tesla, 1e-9) / CURVATURE_PRIOR_P_GEV

    def eta(self, col: np.ndarray) -> np.ndarray:
        return self.det.eta_min + col * self.det.eta_per_bin

    def z_of(self, col: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
        """Hit coordinate z (m) of continuous column ``col`` at radius ``radius``."""
        return radius * np.sinh(self.eta(col))

    def dz_per_strip(self, col: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
        return radius * np.cosh(self.eta(col)) * self.det.eta_per_bin

    def col_of(self, z: np.ndarray, radius: np.ndarray | float) -> np.ndarray:
        """Continuous column of the point (radius, z)."""
        return (np.arcsinh(z / radius) - self.det.eta_min) / self.det.eta_per_bin


class _Sparse:
    """Clusters (and seed clusters) of all events as flat arrays, split into event batches."""

    def __init__(self, geo: _Geometry, hits: np.ndarray) -> None:
        n, n_rows, width = hits.shape
        self.n = n
        pos = _nonzero(hits)
        ev, rc = np.divmod(pos, n_rows * width)
        row = rc // width
        line, s, e = _runs(pos, width)  # line = event * rows + row
        self.cl = (line // n_rows, line % n_rows, 0.5 * (s + e), (e - s).astype(np.float64))
        # Seed clusters: runs in the OR of a station's rows, ordered per event by the number
        # of rows that fired inside them (a muon fires most rows, a noise strip one), so that
        # the MAX_SEEDS kept are the best ones.
        self.seeds = []
        for rows in geo.seed_groups:
            m = np.isin(row, rows)
            keys = ev[m] * width + pos[m] % width
            uniq, inv = np.unique(keys, return_inverse=True)
            sev, ss, se = _runs(uniq, width)
            run_of = np.searchsorted(uniq[_run_starts(uniq, width)], uniq, side="right") - 1
            fired = np.unique(run_of[inv] * n_rows + row[m])
            n_fired = np.bincount(fired // n_rows, minlength=sev.size)
            o = np.lexsort((-n_fired, sev))
            self.seeds.append((sev[o], 0.5 * (ss + se)[o]))
        # Batch order: events sorted by their work (seed pairs x clusters per row).
        counts = np.bincount(line, minlength=n * n_rows).reshape(n, n_rows)
        kmax = np.minimum(counts.max(1, initial=0), MAX_CLUSTERS)
        ns = [np.minimum(np.bincount(sv, minlength=n), MAX_SEEDS) for sv, _ in self.seeds]
        work = ns[0] * sum(ns[1:]) * np.maximum(kmax, 1)
        self.order = np.argsort(work, kind="stable")
        self.n_rows = n_rows

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]]:
        """Yield event indices, cluster centres and widths (B, L, K), seed centres [(B, K)]."""
        n, n_rows = self.n, self.n_rows
        batch = np.empty(n, np.int64)
        local = np.empty(n, np.int64)
        rank = np.arange(n)
        batch[self.order] = rank // BATCH_EVENTS
        local[self.order] = rank % BATCH_EVENTS
        n_batches = -(-n // BATCH_EVENTS)

        def split(
            ev: np.ndarray, row: np.ndarray, n_per_event: int, *values: np.ndarray
        ) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
            key = batch[ev] * (BATCH_EVENTS * n_per_event) + local[ev] * n_per_event + row
            o = np.argsort(key, kind="stable")
            key = key[o]
            values = [v[o] for v in values]
            edges = np.searchsorted(key // (BATCH_EVENTS * n_per_event), np.arange(n_batches + 1))
            for i in range(n_batches):
                sl = slice(edges[i], edges[i + 1])
                yield key[sl] % (BATCH_EVENTS * n_per_event), [v[sl] for v in values]

        ev, row, x, w = self.cl
        parts = [split(ev, row, n_rows, x, w)]
        parts += [split(sev, np.zeros_like(sev), 1, sx) for sev, sx in self.seeds]
        for i, items in enumerate(zip(*parts, strict=True)):
            events = self.order[i * BATCH_EVENTS:(i + 1) * BATCH_EVENTS]
            b = len(events)
            (lines, (x, w)), seeds = items[0], items[1:]
            xc, wid = _pad(lines, b * n_rows, MAX_CLUSTERS, x, w)
            seed_x = [_pad(lines_s, b, MAX_SEEDS, sx)[0] for lines_s, (sx,) in seeds]
            yield events, xc.reshape(b, n_rows, -1), wid.reshape(b, n_rows, -1), seed_x


def _pad(line: np.ndarray, n_lines: int, cap: int, *values: np.ndarray) -> list[np.ndarray]:
    """Scatter values of ``line``-sorted entries into (n_lines, K <= cap) arrays (NaN = empty)."""
    counts = np.bincount(line, minlength=n_lines)
    k = int(min(cap, max(1, counts.max(initial=0))))
    rank = np.arange(line.size) - (np.cumsum(counts) - counts)[line]
    keep = rank < k
    out = []
    for v in values:
        a = np.full((n_lines, k), np.nan)
        a[line[keep], rank[keep]] = v[keep]
        out.append(a)
    return out


def _line_fit(
    r: np.ndarray, z: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted fit z = a + b r over the last axis (w = 0: no hit): a, b, chi2, valid."""
    s0 = w.sum(-1)
    s1 = (w * r).sum(-1)
    s2 = (w * r * r).sum(-1)
    sz = (w * z).sum(-1)
    srz = (w * r * z).sum(-1)
    den = s0 * s2 - s1 * s1
    valid = den > 1e-9 * np.maximum(s0 * s2, 1e-300)
    den = np.where(valid, den, 1.0)
    b = (s0 * srz - s1 * sz) / den
    a = (sz - b * s1) / np.where(s0 > 0, s0, 1.0)
    res = z - a[..., None] - b[..., None] * r
    return a, b, (w * res * res).sum(-1), valid


def _pick(
    geo: _Geometry, xc: np.ndarray, wid: np.ndarray, rows: np.ndarray,
    a: np.ndarray, b: np.ndarray, road: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest cluster in each of ``rows`` to the lines z = a + b (R - r_ref), a, b: (N, S).

    Distance is from the predicted column to the cluster's nearest edge; empty slots of the
    centres ``xc`` must hold a far-away value, not NaN. Returns the cluster
    slot (N, S, len(rows)), -1 where none lies within ``road`` strips, and the prediction.
    """
    radii = geo.radii[rows]
    pred = geo.col_of(a[..., None] + b[..., None] * (radii - geo.r_ref), radii)
    delta = np.abs(xc[:, None, rows, :] - pred[..., None])
    dist = np.maximum(delta - 0.5 * wid[:, None, rows, :], 0.0) + 1e-3 * delta
    idx = dist.argmin(-1)
    dmin = np.take_along_axis(dist, idx[..., None], -1)[..., 0]
    return np.where(dmin <= road + 1e-2, idx, -1), pred


def _gather(arr: np.ndarray, rows: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``arr`` (N, L, K) at ``rows`` and slots ``idx`` (N, S, R); NaN where idx < 0."""
    sub = arr[:, rows, :]
    lin = np.arange(len(rows)) * sub.shape[-1] + np.maximum(idx, 0)
    flat = sub.reshape(sub.shape[0], -1)
    out = np.take_along_axis(flat, lin.reshape(idx.shape[0], -1), -1).reshape(idx.shape)
    return np.where(idx >= 0, out, np.nan)


def _hit_arrays(
    geo: _Geometry, xc: np.ndarray, wid: np.ndarray, rows: np.ndarray, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radii relative to r_ref, z and weights (0 for no hit) of the picked clusters."""
    has = idx >= 0
    x = np.nan_to_num(_gather(xc, rows, idx))
    w = np.where(has, _gather(wid, rows, idx), 1.0)
    radii = geo.radii[rows]
    z = np.where(has, geo.z_of(x, radii), 0.0)
    sig = geo.dz_per_strip(x, radii) * w / np.sqrt(12.0)
    return np.broadcast_to(radii - geo.r_ref, idx.shape), z, np.where(has, sig**-2.0, 0.0)


def _seed_lines(geo: _Geometry, seeds: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Lines (a, b) of shape (N, S) through every inner x middle seed pair; NaN if empty."""
    z_in = geo.z_of(seeds[0], geo.seed_radii[0])
    r_in = geo.seed_radii[0]
    n = len(z_in)
    a_list, b_list = [], []
    for x_mid, r_mid in zip(seeds[1:], geo.seed_radii[1:], strict=True):
        z_mid = geo.z_of(x_mid, r_mid)
        b = (z_mid[:, None, :] - z_in[:, :, None]) / (r_mid - r_in)
        a_list.append((z_in[:, :, None] + b * (geo.r_ref - r_in)).reshape(n, -1))
        b_list.append(b.reshape(n, -1))
    return np.concatenate(a_list, 1), np.concatenate(b_list, 1)


def _curved_fit(
    geo: _Geometry, r: np.ndarray, z: np.ndarray, w: np.ndarray, b0: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Fit z = a + b r + c g(R) per track (last axis = rows, r = R - r_ref), prior on c.

    ``g(R) = (1 + b0^2)^(3/2) / 2 * max(R - R_field, 0)^2`` with ``b0`` a straight-fit slope;
    ``c = -k`` for a circle of signed curvature ``k = q 0.3 B / p``.
    Returns a, b, c, the (a, b) covariance, chi2, the residuals and a validity mask.
    """
    g = 0.5 * (1.0 + b0[..., None] ** 2) ** 1.5 * np.maximum(r + geo.r_ref - geo.r_field, 0) ** 2
    design = np.stack([np.ones_like(r), r, g], -1)
    normal = np.einsum("...ri,...r,...rj->...ij", design, w, design)
    normal[..., 2, 2] += geo.sigma_k**-2.0
    rhs = np.einsum("...ri,...r,...r->...i", design, w, z)
    n2 = normal[..., :2, :2]
    det2 = n2[..., 0, 0] * n2[..., 1, 1] - n2[..., 0, 1] ** 2
    bad = ~(det2 > 1e-9 * n2[..., 0, 0] * n2[..., 1, 1])  # fewer than two distinct radii
    cov = np.linalg.inv(np.where(bad[..., None, None], np.eye(3), normal))
    par = np.einsum("...ij,...j->...i", cov, rhs)
    res = z - np.einsum("...ri,...i->...r", design, par)
    chi2 = (w * res * res).sum(-1) + (par[..., 2] / geo.sigma_k) ** 2
    return par[..., 0], par[..., 1], par[..., 2], cov[..., :2, :2], chi2, res, ~bad


def _fit_batch(
    geo: _Geometry, xc: np.ndarray, wid: np.ndarray, seeds: list[np.ndarray]
) -> dict[str, np.ndarray]:
    """Candidates from the seed lines, extended and fitted; the best pair; the vertex."""
    xp, wp = np.where(np.isnan(xc), -1e6, xc), np.nan_to_num(wid)  # for _pick
    idx, a, b, cost = _candidates(geo, xc, wid, xp, wp, seeds)
    idx, a, b, res, cost = _extend_candidates(geo, xc, wid, xp, wp, (idx, a, b, cost))
    found, sel = _best_pair(geo, idx, a, b, cost)
    return _pair_vertex(geo, xc, wid, (idx, a, b, res), found, sel)


def _candidates(geo: _Geometry, xc: np.ndarray, wid: np.ndarray, xp: np.ndarray,
                wp: np.ndarray, seeds: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Seed lines; pick (wide road), refit, pick (tight road), refit: (idx, a, b, cost)."""
    fr, n_in, n_fr = geo.finding, len(geo.inner), len(geo.finding)
    a, b = _seed_lines(geo, seeds)
    seed_ok = np.isfinite(a) & np.isfinite(b)
    a, b = np.nan_to_num(a), np.nan_to_num(b)
    idx, _ = _pick(geo, xp, wp, fr, a, b, ROAD_SEED)
    a, b, _, ok1 = _line_fit(*_hit_arrays(geo, xc, wid, fr, idx))
    idx, _ = _pick(geo, xp, wp, fr, a, b, ROAD_FIT)
    a, b, chi2, ok2 = _line_fit(*_hit_arrays(geo, xc, wid, fr, idx))
    has = idx >= 0
    n_inner = has[..., :n_in].sum(-1)
    n_mid = has[..., n_in:].sum(-1)
    valid = seed_ok & ok1 & ok2 & (n_inner >= MIN_INNER_HITS) & (n_mid >= MIN_MIDDLE_HITS)
    cost = np.where(valid, chi2 + MISS_COST * (n_fr - n_inner - n_mid), np.inf)

    return idx, a, b, cost


def _extend_candidates(geo: _Geometry, xc: np.ndarray, wid: np.ndarray, xp: np.ndarray,
                       wp: np.ndarray, cand: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Keep the cheapest distinct candidates, extend them to the outer rows, curved fit with
    outlier removal: (idx, a, b, residuals, cost)."""
    idx, a, b, cost = cand
    n_in, n_fr = len(geo.inner), len(geo.finding)
    rows = np.concatenate([geo.finding, geo.outer])
    top = np.argsort(cost, 1)[:, :TOP_CANDIDATES]
    idx = np.take_along_axis(idx, top[..., None], 1)
    a, b, cost = (np.take_along_axis(v, top, 1) for v in (a, b, cost))
    same = (idx[:, :, None, :] == idx[:, None, :, :]).all(-1)
    valid = np.isfinite(cost) & ~np.tril(same, -1).any(-1)  # drop duplicates of cheaper ones
    oidx, _ = _pick(geo, xp, wp, geo.outer, a, b, ROAD_OUTER)
    idx = np.concatenate([idx, oidx], -1)  # (N, T, rows)
    r, z, w = _hit_arrays(geo, xc, wid, rows, idx)
    w = w.copy()
    b0 = b
    for _ in range(OUTLIER_PASSES + 1):
        a, b, _, _, chi2, res, ok3 = _curved_fit(geo, r, z, w, b0)
        pull2 = w * res * res
        worst = pull2.argmax(-1)[..., None]
        drop = (np.take_along_axis(pull2, worst, -1) > OUTLIER_CHI2) & (
            np.arange(len(rows)) == worst)
        w = np.where(drop, 0.0, w)
        idx = np.where(drop, -1, idx)
    has = idx >= 0
    valid &= ok3 & (has[..., :n_in].sum(-1) >= MIN_INNER_HITS)
    valid &= has[..., n_in:n_fr].sum(-1) >= MIN_MIDDLE_HITS
    cost = np.where(valid, chi2 + MISS_COST * (len(rows) - has.sum(-1)), np.inf)

    return idx, a, b, res, cost


def _best_pair(geo: _Geometry, idx: np.ndarray, a: np.ndarray, b: np.ndarray,
               cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The best pair of candidates: no shared middle-row cluster, distinct clusters in at
    least one row beyond the field boundary, no crossing outside the inner rows."""
    n, t = idx.shape[:2]
    n_in, n_fr = len(geo.inner), len(geo.finding)
    i, j = np.triu_indices(t, 1)
    ii, ij = idx[:, i], idx[:, j]
    both = (ii == ij) & (ii >= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        u_cross = (a[:, j] - a[:, i]) / (b[:, i] - b[:, j])
    crossed = ~(u_cross + geo.r_ref <= geo.r_cross)  # also NaN: parallel
    pair_cost = cost[:, i] + cost[:, j] + MISS_COST * both[..., :n_in].sum(-1)
    apart = ((ii != ij) & (ii >= 0) & (ij >= 0))[..., n_in:].any(-1)  # not one split track
    pair_cost = np.where(both[..., n_in:n_fr].any(-1) | crossed | ~apart, np.inf, pair_cost)
    if i.size:
        best = pair_cost.argmin(1)
        found = np.isfinite(np.take_along_axis(pair_cost, best[:, None], 1)[:, 0])
        sel = np.stack([i[best], j[best]], 1)
    else:
        found, sel = np.zeros(n, bool), np.zeros((n, 2), np.int64)
    return found, sel


def _pair_vertex(geo: _Geometry, xc: np.ndarray, wid: np.ndarray, cand: tuple[np.ndarray, ...],
                 found: np.ndarray, sel: np.ndarray) -> dict[str, np.ndarray]:
    """Refit the selected pair (shared clusters resolved) and intersect the two tracks."""
    idx, a, b, res = cand
    n_in, n_fr = len(geo.inner), len(geo.finding)
    rows = np.concatenate([geo.finding, geo.outer])
    tidx = np.take_along_axis(idx, sel[..., None], 1)  # (N, 2, rows)
    ta, tb = np.take_along_axis(a, sel, 1), np.take_along_axis(b, sel, 1)

    # --- an outer cluster on both tracks stays on the one it fits better.
    r, z, w = (v.copy() for v in _hit_arrays(geo, xc, wid, rows, tidx))
    if geo.outer.size:
        resid = np.abs(np.take_along_axis(res, sel[..., None], 1)[..., n_fr:])
        same_o = (tidx[:, 0, n_fr:] == tidx[:, 1, n_fr:]) & (tidx[:, 0, n_fr:] >= 0)
        worse = np.stack([resid[:, 0] > resid[:, 1], resid[:, 0] <= resid[:, 1]], 1)
        drop = same_o[:, None] & worse
        w[..., n_fr:] = np.where(drop, 0.0, w[..., n_fr:])
        tidx[..., n_fr:] = np.where(drop, -1, tidx[..., n_fr:])

    # --- field-free rows where both tracks have a hit: the muons are close there (vertex near
    # BI), so the nearest-cluster picks may be swapped. Tracks from one vertex do not cross
    # after it: the track lower in column at the middle rows takes the lower cluster; a cluster
    # used by both is split into its edge strips when wider than one strip, else shared.
    r_mid = geo.radii[geo.middle[-1]]
    lower = geo.col_of(ta + tb * (r_mid - geo.r_ref), r_mid)
    first_low = (lower[:, 0] <= lower[:, 1])[:, None]
    ix = tidx[..., :n_in]
    both = (ix[:, 0] >= 0) & (ix[:, 1] >= 0)  # (N, I)
    if both.any():
        x = _gather(xc, geo.inner, ix)  # (N, 2, I)
        wd = _gather(wid, geo.inner, ix)
        same = ix[:, 0] == ix[:, 1]
        swap = x[:, 0] > x[:, 1]
        x_lo, x_hi = np.where(swap, x[:, 1], x[:, 0]), np.where(swap, x[:, 0], x[:, 1])
        w_lo, w_hi = np.where(swap, wd[:, 1], wd[:, 0]), np.where(swap, wd[:, 0], wd[:, 1])
        split = same & (wd[:, 0] >= 2)
        x_lo = np.where(split, x_lo - 0.5 * w_lo + 0.5, x_lo)
        x_hi = np.where(split, x_hi + 0.5 * w_hi - 0.5, x_hi)
        w_lo, w_hi = np.where(split, 1.0, w_lo), np.where(split, 1.0, w_hi)
        r_in = geo.radii[geo.inner]
        for k, own_low in ((0, first_low), (1, ~first_low)):
            x_new = np.nan_to_num(np.where(own_low, x_lo, x_hi))
            w_new = np.where(own_low, w_lo, w_hi)
            z[:, k, :n_in] = np.where(both, geo.z_of(x_new, r_in), z[:, k, :n_in])
            sig = geo.dz_per_strip(x_new, r_in) * np.nan_to_num(w_new, nan=1.0) / np.sqrt(12.0)
            w[:, k, :n_in] = np.where(both, sig**-2.0, w[:, k, :n_in])
    # The rows of one station see a track at nearly the same fractional strip, so their
    # quantisation errors are almost fully correlated: share each station's weight among them.
    n_st = np.einsum("...r,rs->...s", (w > 0).astype(np.float64), geo.same_station)
    w = w / np.maximum(n_st, 1.0)
    fa, fb, fk, cov, fchi2, _, ok4 = _curved_fit(geo, r, z, w, tb)
    found &= ok4.all(1)

    # --- intersection of the two lines z = a + b (R - r_ref).
    db = fb[:, 0] - fb[:, 1]
    ok = found & (np.abs(db) > MIN_SLOPE_SIGNIFICANCE * np.sqrt(cov[:, 0, 1, 1] + cov[:, 1, 1, 1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (fa[:, 1] - fa[:, 0]) / db
        var_z = cov[..., 0, 0] + 2 * u[:, None] * cov[..., 0, 1] + u[:, None] ** 2 * cov[..., 1, 1]
        r_err = np.sqrt(var_z.sum(1)) / np.abs(db)
    fnd = found[:, None]
    return {
        "r_cm": np.where(ok, 100.0 * (geo.r_ref + u), np.nan),
        "z_cm": np.where(ok, 100.0 * (fa[:, 0] + fb[:, 0] * u), np.nan),
        "ok": ok,
        "r_err_cm": np.where(ok, 100.0 * r_err, np.nan),
        "slope": np.where(fnd, fb, np.nan),
        "z_ref_cm": np.where(fnd, 100.0 * fa, np.nan),
        "curvature": np.where(fnd, -fk, np.nan),  # z'' = -k / sin^3(theta)
        "n_hits": np.where(fnd, (tidx >= 0).sum(-1), 0),
        "chi2": np.where(fnd, fchi2, np.nan),
    }


def fit_vertex(hits: np.ndarray, det: DetectorConfig) -> dict[str, np.ndarray]:
    """Fit two straight muon tracks per event and intersect them in the R-z plane.

    Args:
        hits: (N, L, C) binary hit images (uint8 or bool; nonzero = fired strip).
        det: the detector configuration the images were simulated with.

    Returns:
        ``r_cm`` (N,) vertex radius in cm (NaN where no fit), ``z_cm`` (N,) vertex z in cm,
        ``ok`` (N,) bool: two distinct tracks were found, not parallel within 3 sigma;
        ``r_err_cm`` (N,) the radius error from strip quantisation alone (no scattering); per
        track, shape (N, 2):
        ``slope`` dz/dR before the field, ``z_ref_cm`` z of that line at the mean radius of
        the finding rows, ``curvature`` k = q 0.3 B / p (1/m) in the field, ``n_hits`` and
        ``chi2`` of the final fit (outlier hits dropped, station weights shared).
    """
    hits = _check_hits(hits, det)
    geo = _Geometry(det)
    n = len(hits)
    out = {
        "r_cm": np.full(n, np.nan), "z_cm": np.full(n, np.nan), "ok": np.zeros(n, bool),
        "r_err_cm": np.full(n, np.nan), "slope": np.full((n, 2), np.nan),
        "z_ref_cm": np.full((n, 2), np.nan), "curvature": np.full((n, 2), np.nan),
        "n_hits": np.zeros((n, 2), np.int64), "chi2": np.full((n, 2), np.nan),
    }
    if n == 0:
        return out
    for events, xc, wid, seeds in _Sparse(geo, hits).batches():
        for key, val in _fit_batch(geo, xc, wid, seeds).items():
            out[key][events] = val
    return out


def fit_known_tracks(mu_x: np.ndarray, det: DetectorConfig, strips: bool) -> np.ndarray:
    """Vertex radius (cm) from the two muons' true crossing columns, hits assigned perfectly.

    The resolution floor of the toy (no pattern recognition, no clusters): ``mu_x`` (N, 2, L)
    continuous columns (NaN where a muon missed a row), fitted with the same curved model as
    :func:`fit_vertex`. ``strips=False`` fits the true positions (only multiple scattering is
    left); ``strips=True`` the centres of the strips they cross (scattering + quantisation).
    NaN where a muon has fewer than two rows or the lines are parallel.
    """
    geo = _Geometry(det)
    rows = np.concatenate([geo.finding, geo.outer])
    x = np.asarray(mu_x, dtype=np.float64)[..., rows]
    if strips:
        x = np.floor(x) + 0.5
    seen = np.isfinite(x)
    radii = np.broadcast_to(geo.radii[rows], x.shape)
    x0 = np.where(seen, x, 0.0)
    z = np.where(seen, geo.z_of(x0, radii), 0.0)
    sig = geo.dz_per_strip(x0, radii) / np.sqrt(12.0)
    w = np.where(seen, sig**-2.0, 0.0)
    n_st = np.einsum("...r,rs->...s", (w > 0).astype(np.float64), geo.same_station)
    w = w / np.maximum(n_st, 1.0)
    r = radii - geo.r_ref
    inner = np.isin(rows, geo.finding)
    # straight fit in the finding rows first: the slope that sets the curvature term's scale
    _, b0, _, line_ok = _line_fit(r, z, np.where(inner, w, 0.0))
    b0 = np.where(line_ok, b0, 0.0)
    fa, fb, _, _, _, _, ok = _curved_fit(geo, r, z, w, b0)
    ok = ok.all(1) & ((seen.sum(-1)) >= 2).all(1)
    db = fb[:, 0] - fb[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (fa[:, 1] - fa[:, 0]) / db
    return np.where(ok & (db != 0), 100.0 * (geo.r_ref + u), np.nan)
