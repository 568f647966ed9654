"""Jet-image preprocessing ("QCD or What?" chain), symmetry augmentation and pixel observables.

Conventions (see sw/docs/jets.md)
---------------------------------
- Constituent arrays are padded ``(n_jets, M)``; padding entries carry ``pt = 0`` (and finite
  coordinates), so they drop out of every pT-weighted sum.
- Images are ``(n_jets, C, H, W)`` (or ``(n_jets, H, W)``): axis -2 is eta (image rows, drawn
  vertically with ``origin="lower"``), axis -1 is phi. Pixel ``i`` covers
  ``[(i - H/2) * pixel, (i + 1 - H/2) * pixel)`` in eta relative to the image centre (same in
  phi), so the grid is symmetric about 0 for odd and even sizes alike.
- Raw images hold pT per pixel in GeV; :func:`normalise` is a separate, optional last step.

The constituent steps are applied in the order centre -> rotate -> flip -> pixelate, then the
image steps crop -> normalise. Every function is pure numpy and returns new arrays.
"""

from __future__ import annotations

import numpy as np

from trigkit.core.errors import TrigkitError

#: Flip conventions accepted by :func:`flip`.
FLIP_MODES = ("quadrant", "max")


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Azimuthal angles wrapped into [-pi, pi)."""
    return (np.asarray(phi, dtype=np.float64) + np.pi) % (2.0 * np.pi) - np.pi


def _as_constituents(
    eta: np.ndarray, phi: np.ndarray, pt: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    eta, phi, pt = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (eta, phi, pt))
    if not eta.shape == phi.shape == pt.shape:
        raise TrigkitError(
            f"constituent arrays must share one (n_jets, M) shape; got eta {eta.shape}, "
            f"phi {phi.shape}, pt {pt.shape}"
        )
    return eta, phi, pt


def centroid(
    eta: np.ndarray, phi: np.ndarray, pt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """pT-weighted centroid (eta, phi) per jet; phi is averaged relative to the hardest
    constituent, so jets across the +-pi boundary are handled. Empty jets give (0, 0)."""
    eta, phi, pt = _as_constituents(eta, phi, pt)
    rows = np.arange(len(pt))
    ref = phi[rows, np.argmax(pt, axis=1)] if pt.shape[1] else np.zeros(len(pt))
    dphi = wrap_phi(phi - ref[:, None])
    total = pt.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    c_eta = np.where(total > 0, (pt * eta).sum(axis=1) / safe, 0.0)
    c_phi = np.where(total > 0, wrap_phi(ref + (pt * dphi).sum(axis=1) / safe), 0.0)
    return c_eta, c_phi


def centre(
    eta: np.ndarray, phi: np.ndarray, pt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Shift each jet so its pT-weighted centroid sits at (0, 0); phi wraps around +-pi."""
    eta, phi, pt = _as_constituents(eta, phi, pt)
    c_eta, c_phi = centroid(eta, phi, pt)
    return eta - c_eta[:, None], wrap_phi(phi - c_phi[:, None])


def principal_angle(eta: np.ndarray, phi: np.ndarray, pt: np.ndarray) -> np.ndarray:
    """Angle (rad, from the eta axis) of the major principal axis of each jet's pT-weighted
    second-moment tensor about its centroid."""
    eta, phi, pt = _as_constituents(eta, phi, pt)
    c_eta, c_phi = centroid(eta, phi, pt)
    de, dp = eta - c_eta[:, None], wrap_phi(phi - c_phi[:, None])
    s_ee = (pt * de * de).sum(axis=1)
    s_pp = (pt * dp * dp).sum(axis=1)
    s_ep = (pt * de * dp).sum(axis=1)
    return 0.5 * np.arctan2(2.0 * s_ep, s_ee - s_pp)


def rotate(
    eta: np.ndarray, phi: np.ndarray, pt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate each jet about its centroid so the major principal axis is vertical (along eta).

    The rotation acts on (eta, phi) as on a plane (the usual small-angle jet-image convention,
    not a Lorentz transformation); the 180-degree ambiguity is left to :func:`flip`.
    """
    eta, phi, pt = _as_constituents(eta, phi, pt)
    c_eta, c_phi = centroid(eta, phi, pt)
    alpha = principal_angle(eta, phi, pt)[:, None]
    de, dp = eta - c_eta[:, None], wrap_phi(phi - c_phi[:, None])
    cos, sin = np.cos(alpha), np.sin(alpha)
    new_eta = c_eta[:, None] + cos * de + sin * dp
    new_phi = wrap_phi(c_phi[:, None] - sin * de + cos * dp)
    return new_eta, new_phi


def flip(
    eta: np.ndarray, phi: np.ndarray, pt: np.ndarray, mode: str = "quadrant"
) -> tuple[np.ndarray, np.ndarray]:
    """Reflect eta and/or phi (about 0, the image centre) so the maximum sits at eta >= 0,
    phi >= 0 (upper right with eta drawn upwards).

    ``mode="quadrant"`` (default): the quadrant with the largest pT sum is moved there;
    ``mode="max"``: the hardest constituent is. Coordinates on an axis (0) count as positive.
    Expects jet-frame coordinates (after :func:`centre`).
    """
    eta, phi, pt = _as_constituents(eta, phi, pt)
    if mode == "quadrant":
        pos_e, pos_p = eta >= 0, phi >= 0
        quads = np.stack([(pt * (pos_e == se) * (pos_p == sp)).sum(axis=1)
                          for se in (True, False) for sp in (True, False)], axis=1)
        best = np.argmax(quads, axis=1)  # 0: (+,+), 1: (+,-), 2: (-,+), 3: (-,-)
        sign_e = np.where(best >= 2, -1.0, 1.0)
        sign_p = np.where(best % 2 == 1, -1.0, 1.0)
    elif mode == "max":
        rows = np.arange(len(pt))
        hard = np.argmax(pt, axis=1) if pt.shape[1] else np.zeros(len(pt), np.int64)
        sign_e = np.where(eta[rows, hard] < 0, -1.0, 1.0) if pt.shape[1] else np.ones(len(pt))
        sign_p = np.where(phi[rows, hard] < 0, -1.0, 1.0) if pt.shape[1] else np.ones(len(pt))
    else:
        raise TrigkitError(f"flip mode {mode!r} is unknown; allowed: {', '.join(FLIP_MODES)}")
    return eta * sign_e[:, None], phi * sign_p[:, None]


def pixelate(
    eta: np.ndarray, phi: np.ndarray, weights: np.ndarray, size: int, pixel: float
) -> np.ndarray:
    """Images (n_jets, size, size) float64: each constituent's weight is ADDED to its pixel
    (two constituents in one pixel sum); constituents outside the window
    ``[-size/2, size/2) * pixel`` in eta or phi are dropped."""
    eta, phi, weights = _as_constituents(eta, phi, weights)
    if size < 1 or pixel <= 0:
        raise TrigkitError(f"pixelate needs size >= 1 and pixel > 0; got {size}, {pixel:g}")
    n = len(eta)
    i = np.floor(eta / pixel + size / 2.0)
    j = np.floor(phi / pixel + size / 2.0)
    ok = (i >= 0) & (i < size) & (j >= 0) & (j < size) & (weights != 0)
    jet = np.broadcast_to(np.arange(n)[:, None], eta.shape)[ok]
    flat = (jet * size + i[ok].astype(np.int64)) * size + j[ok].astype(np.int64)
    images = np.bincount(flat, weights=weights[ok], minlength=n * size * size)
    return images.reshape(n, size, size)


def crop(images: np.ndarray, size: int) -> np.ndarray:
    """Centre crop of the last two axes (eta, phi) to ``size`` x ``size``.

    When ``H - size`` is odd the crop keeps one more pixel on the high side (half a pixel off
    centre); crop even differences to keep the grid symmetric.
    """
    images = np.asarray(images)
    h, w = images.shape[-2:]
    if not 1 <= size <= min(h, w):
        raise TrigkitError(f"cannot crop {h}x{w} images to {size}x{size}; allowed 1..{min(h, w)}")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size].copy()


def normalise(images: np.ndarray) -> np.ndarray:
    """Scale each jet's image to unit sum over all channels and pixels; all-zero images stay
    zero (no NaN). Float dtypes are kept, others become float32."""
    images = np.asarray(images)
    out = images if images.dtype.kind == "f" else images.astype(np.float32)
    axes = tuple(range(1, out.ndim))
    total = out.sum(axis=axes, dtype=np.float64, keepdims=True)
    scale = np.where(total > 0, 1.0 / np.where(total > 0, total, 1.0), 0.0)
    return (out * scale).astype(out.dtype)


def symmetry_flags(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random (reflect_eta, rotate_pi) flags, each true with probability 1/2, for ``n`` jets."""
    flags = rng.random((2, n)) < 0.5
    return flags[0], flags[1]


def apply_symmetries(
    images: np.ndarray, reflect_eta: np.ndarray, rotate_pi: np.ndarray
) -> np.ndarray:
    """Apply eta reflection (eta -> -eta) and rotation by pi about the jet axis
    ((eta, phi) -> (-eta, -phi)) where flagged. Each is its own inverse and they commute, so
    applying the same flags twice restores the images exactly."""
    out = np.array(images, copy=True)
    reflect_eta, rotate_pi = np.asarray(reflect_eta, bool), np.asarray(rotate_pi, bool)
    if reflect_eta.shape != (len(out),) or rotate_pi.shape != (len(out),):
        raise TrigkitError(f"symmetry flags must have shape ({len(out)},), one per image")
    out[reflect_eta] = out[reflect_eta][..., ::-1, :]
    out[rotate_pi] = out[rotate_pi][..., ::-1, ::-1]
    return out


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Symmetry augmentation of jet-frame images: random eta reflection and random phi rotation.

    A global phi rotation of the event is exact but acts trivially on jet-centred images; what
    survives in the jet frame, and is exact on the pixel grid and keeps the principal axis
    vertical, is the rotation by pi about the jet axis. Together with the eta reflection
    (forward-backward symmetry) each jet gets one of {identity, eta reflection, phi
    reflection, pi rotation} with equal probability. Total intensity and dtype are preserved;
    :func:`symmetry_flags` with an equally seeded generator plus :func:`apply_symmetries`
    invert it.
    """
    images = np.asarray(images)
    return apply_symmetries(images, *symmetry_flags(len(images), rng))


def pixel_coordinates(h: int, w: int, pixel: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre eta (h,) and phi (w,) of an h x w image relative to its centre."""
    return (np.arange(h) - (h - 1) / 2.0) * pixel, (np.arange(w) - (w - 1) / 2.0) * pixel


def image_observables(images: np.ndarray, pixel_size: float) -> dict[str, np.ndarray]:
    """Jet observables from pixels (images (N, C, H, W) or (N, H, W); channels summed).

    Keys: ``pt`` (sum of pixel pT), ``mass`` (invariant mass of the pixels as massless
    4-vectors at the pixel centres), ``width`` (pT-weighted mean distance of the pixels from
    their pT centroid) and ``max_pixel``. Units follow the images: GeV for raw images, fractions
    of the jet pT for normalised ones. Empty images give zeros.
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 4:
        x = x.sum(axis=1)
    if x.ndim != 3:
        raise TrigkitError(f"jet images must be (N, C, H, W) or (N, H, W); got shape {x.shape}")
    n, h, w = x.shape
    eta, phi = pixel_coordinates(h, w, float(pixel_size))
    ch, sh = np.cosh(eta), np.sinh(eta)
    cp, sp = np.cos(phi), np.sin(phi)
    pt = x.sum(axis=(1, 2))
    energy = np.einsum("nij,i->n", x, ch)
    pz = np.einsum("nij,i->n", x, sh)
    px = np.einsum("nij,j->n", x, cp)
    py = np.einsum("nij,j->n", x, sp)
    mass = np.sqrt(np.maximum(energy**2 - px**2 - py**2 - pz**2, 0.0))
    safe = np.where(pt > 0, pt, 1.0)
    c_eta = np.einsum("nij,i->n", x, eta) / safe
    c_phi = np.einsum("nij,j->n", x, phi) / safe
    dr = np.sqrt((eta[None, :, None] - c_eta[:, None, None]) ** 2
                 + (phi[None, None, :] - c_phi[:, None, None]) ** 2)
    width = (x * dr).sum(axis=(1, 2)) / safe
    return {"pt": pt, "mass": mass, "width": np.where(pt > 0, width, 0.0),
            "max_pixel": x.reshape(n, -1).max(axis=1) if h * w else np.zeros(n)}
