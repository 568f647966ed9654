"""Configuration of the toy jet generator: class names, constants and :class:`JetConfig`.

The physics lives in :mod:`trigkit.offline.jets.physics`, the file writers and readers in
:mod:`trigkit.offline.jets.files` (see sw/docs/jets.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trigkit.core.config import from_dict, require_range, to_dict
from trigkit.core.errors import ConfigError

#: Class names; the label of a jet is its index here.
LABEL_NAMES = ("qcd", "darkphoton", "top", "darkshower")
LABELS = {name: i for i, name in enumerate(LABEL_NAMES)}
SAMPLES = (*LABEL_NAMES, "mixed")
#: Preprocessing steps a config may request, in the order they are applied.
PREPROCESS_STEPS = ("centre", "rotate", "flip", "normalise")
#: Jets per random-stream chunk; fixed so results do not depend on how they are written.
CHUNK_JETS = 2048
#: eta x phi extent of the image window when ``pixel_size`` is not given (pixel = 2.5 / size).
DEFAULT_WINDOW = 2.5
#: Pile-up is generated this far beyond the image window (centring may shift the window).
PILEUP_MARGIN = 0.3
#: Largest angle of a hadron from its parton (soft hadrons would otherwise fly anywhere).
HADRON_MAX_ANGLE = 0.4
#: Breit-Wigner masses are truncated to this many widths around the pole.
BW_TRUNCATION = 10.0
#: Rounds of regeneration for top and dark-shower mediator decays not contained in the jet radius.
MAX_CONTAINMENT_TRIES = 200
#: Colour factors C_F and C_A.
CF, CA = 4.0 / 3.0, 3.0
#: Per-jet arrays written beside the images and their units.
TRUTH_UNITS = {
    "jet_pt": "GeV", "jet_eta": "", "jet_mass": "GeV", "n_prongs": "", "had_fraction": "",
    "pixel_pt": "GeV", "pixel_mass": "GeV", "invisible_pt_fraction": "",
}
#: Dataset names :func:`read_jet_images` tries when none is given.
IMAGE_KEYS = ("images", "x", "X", "jetImage", "jet_images", "image")
LABEL_KEYS = ("label", "labels", "y", "Y")


def _default_mixed() -> dict[str, float]:
    return {"qcd": 0.5, "darkphoton": 0.25, "top": 0.25}


@dataclass(frozen=True)
class JetConfig:
    """Jet generator, calorimeter and image settings (GeV, radians, eta-phi distances).

    Attributes:
        image_size: image height = width in pixels (25 or 40 in the reference models).
        pixel_size: pixel edge in eta and phi; None gives 2.5 / image_size (window +-1.25).
        jet_radius: jet radius R: largest first-emission angle, top containment radius.
        pt_min_gev, pt_max_gev: generated jet pT range.
        pt_spectrum_index: dN/dpT ~ pT^-index inside the range (0 = flat).
        eta_max: jet axis uniform in |eta| < eta_max.
        alpha_s: fixed strong coupling of the emission density 2 C alpha_s / pi dz/z dtheta/theta.
        qcd_gluon_fraction: fraction of QCD jets started by a gluon (C_A) rather than a quark.
        shower_generations: emission generations (1: emissions of the hard partons only).
        shower_z_min, shower_z_max: range of the emitted momentum fraction z (log-uniform).
        shower_theta_min: smallest emission angle (largest is the angular-ordering limit).
        shower_kt_min_gev: emissions need z * theta * pT above this (the shower cut-off).
        hadrons_per_log_pt: hadrons per parton = 1 + Poisson(this * ln(1 + pT / GeV)).
        hadron_kt_gev: transverse momentum of hadrons about their parton (angle kT / pT).
        top_mass_gev, top_width_gev, w_mass_gev, w_width_gev, b_mass_gev: decay masses.
        darkphoton_mass_min_gev, darkphoton_mass_max_gev: dark-photon mass range (log-uniform).
        darkphoton_two_prong_fraction: fraction of dark-photon jets with two dark photons.
        darkphoton_parent_mass_min_gev, darkphoton_parent_mass_max_gev: mass range (uniform) of
            the parent decaying to two dark photons; sets the prong separation ~ 2 m / pT.
        darkphoton_hadrons_mean: mean number of hadrons per dark-photon decay (at least 2).
        darkshower_mediator_mass_gev: mass of the heavy mediator X -> q Q_d of a dark-shower
            jet (its pT is the jet pT).
        darkshower_alpha_dark: fixed coupling of the dark SU(3) shower of the dark quark Q_d.
        darkshower_lambda_gev: dark confinement scale Lambda_D: kT cut-off of the dark shower
            and transverse momentum of the dark mesons about their dark parton.
        darkshower_pion_mass_gev: dark-pion mass m_pi_D.
        darkshower_pion_rho_mass_ratio: m_pi_D / m_rho_D (the dark vector meson is heavier).
        darkshower_vector_fraction: fraction of dark mesons that are vectors (rho_D).
        darkshower_r_inv: fraction of dark mesons that are stable and invisible (each meson
            independently); the others decay promptly to a quark pair.
        qcd_em_fraction: mean EM share of a QCD or top jet's energy (hadronic share 1 - this).
        darkphoton_em_fraction: mean EM share of a dark-photon jet (decays in the calorimeter).
        pileup_em_fraction: mean EM share of a pile-up particle.
        em_fraction_jet_concentration: Beta concentration of the per-jet EM share (smaller:
            larger event-by-event fluctuation).
        em_fraction_particle_concentration: Beta concentration of each particle's EM share
            about its jet's mean.
        pileup_density: pile-up particles per unit eta x phi area (Poisson).
        pileup_pt_mean_gev: mean pT of a pile-up particle (exponential).
        em_stochastic, em_constant: EM resolution sigma/E = a/sqrt(E/GeV) (+) b.
        had_stochastic, had_constant: hadronic resolution, same form.
        mixed_fractions: class fractions of the ``mixed`` sample (normalised to 1).
        preprocess: steps applied, in the order of PREPROCESS_STEPS; pixelate and crop are
            always applied, ``normalise`` (unit sum) is optional and makes the images unitless.
    """

    image_size: int = 25
    pixel_size: float | None = None
    jet_radius: float = 1.0
    pt_min_gev: float = 250.0
    pt_max_gev: float = 500.0
    pt_spectrum_index: float = 0.0
    eta_max: float = 2.0
    alpha_s: float = 0.12
    qcd_gluon_fraction: float = 0.5
    shower_generations: int = 2
    shower_z_min: float = 0.002
    shower_z_max: float = 0.5
    shower_theta_min: float = 0.01
    shower_kt_min_gev: float = 1.0
    hadrons_per_log_pt: float = 1.0
    hadron_kt_gev: float = 0.35
    top_mass_gev: float = 172.5
    top_width_gev: float = 1.42
    w_mass_gev: float = 80.4
    w_width_gev: float = 2.09
    b_mass_gev: float = 4.8
    darkphoton_mass_min_gev: float = 0.4
    darkphoton_mass_max_gev: float = 2.0
    darkphoton_two_prong_fraction: float = 0.3
    darkphoton_parent_mass_min_gev: float = 10.0
    darkphoton_parent_mass_max_gev: float = 40.0
    darkphoton_hadrons_mean: float = 4.0
    darkshower_mediator_mass_gev: float = 200.0
    darkshower_alpha_dark: float = 0.3
    darkshower_lambda_gev: float = 5.0
    darkshower_pion_mass_gev: float = 5.0
    darkshower_pion_rho_mass_ratio: float = 0.6
    darkshower_vector_fraction: float = 0.75
    darkshower_r_inv: float = 0.3
    qcd_em_fraction: float = 0.35
    darkphoton_em_fraction: float = 0.1
    pileup_em_fraction: float = 0.5
    em_fraction_jet_concentration: float = 20.0
    em_fraction_particle_concentration: float = 1.5
    pileup_density: float = 2.0
    pileup_pt_mean_gev: float = 0.25
    em_stochastic: float = 0.10
    em_constant: float = 0.007
    had_stochastic: float = 0.50
    had_constant: float = 0.03
    mixed_fractions: dict[str, float] = field(default_factory=_default_mixed)
    preprocess: tuple[str, ...] = ("centre", "rotate", "flip")

    def validate(self) -> None:
        require_range("jets.image_size", self.image_size, 4, 256)
        if self.pixel_size is not None:
            require_range("jets.pixel_size", self.pixel_size, 0.0, 1.0, lo_open=True)
        require_range("jets.jet_radius", self.jet_radius, 0.0, 3.0, lo_open=True)
        require_range("jets.pt_min_gev", self.pt_min_gev, 0.0, lo_open=True)
        require_range("jets.pt_max_gev", self.pt_max_gev, self.pt_min_gev)
        require_range("jets.pt_spectrum_index", self.pt_spectrum_index, 0.0, 10.0)
        require_range("jets.eta_max", self.eta_max, 0.0, 5.0)
        require_range("jets.alpha_s", self.alpha_s, 0.0, 0.5)
        require_range("jets.qcd_gluon_fraction", self.qcd_gluon_fraction, 0.0, 1.0)
        require_range("jets.shower_generations", self.shower_generations, 0, 4)
        require_range("jets.shower_z_max", self.shower_z_max, 0.0, 0.5, lo_open=True)
        require_range("jets.shower_z_min", self.shower_z_min, 0.0, self.shower_z_max,
                      lo_open=True, hi_open=True)
        require_range("jets.shower_theta_min", self.shower_theta_min, 0.0, self.jet_radius,
                      lo_open=True)
        require_range("jets.shower_kt_min_gev", self.shower_kt_min_gev, 0.0, 100.0, lo_open=True)
        require_range("jets.hadrons_per_log_pt", self.hadrons_per_log_pt, 0.0, 5.0)
        require_range("jets.hadron_kt_gev", self.hadron_kt_gev, 0.0, 5.0)
        for name in ("top_width_gev", "w_width_gev", "b_mass_gev"):
            require_range(f"jets.{name}", getattr(self, name), 0.0, 50.0)
        require_range("jets.w_mass_gev", self.w_mass_gev, 0.0, lo_open=True)
        if self.w_mass_gev + BW_TRUNCATION * self.w_width_gev + self.b_mass_gev >= (
                self.top_mass_gev - BW_TRUNCATION * self.top_width_gev):
            raise ConfigError(
                f"jets.top_mass_gev = {self.top_mass_gev:g} is too small for t -> b W with "
                f"w_mass_gev = {self.w_mass_gev:g} and b_mass_gev = {self.b_mass_gev:g} "
                f"(Breit-Wigners truncated at {BW_TRUNCATION:g} widths); raise top_mass_gev or "
                "lower the widths"
            )
        require_range("jets.darkphoton_mass_min_gev", self.darkphoton_mass_min_gev, 0.0,
                      lo_open=True)
        require_range("jets.darkphoton_mass_max_gev", self.darkphoton_mass_max_gev,
                      self.darkphoton_mass_min_gev)
        require_range("jets.darkphoton_two_prong_fraction", self.darkphoton_two_prong_fraction,
                      0.0, 1.0)
        require_range("jets.darkphoton_parent_mass_min_gev",
                      self.darkphoton_parent_mass_min_gev, 2.0 * self.darkphoton_mass_max_gev,
                      lo_open=True)
        require_range("jets.darkphoton_parent_mass_max_gev",
                      self.darkphoton_parent_mass_max_gev, self.darkphoton_parent_mass_min_gev)
        require_range("jets.darkphoton_hadrons_mean", self.darkphoton_hadrons_mean, 2.0, 20.0)
        self._validate_darkshower()
        for name in ("qcd_em_fraction", "darkphoton_em_fraction", "pileup_em_fraction"):
            require_range(f"jets.{name}", getattr(self, name), 0.0, 1.0,
                          lo_open=True, hi_open=True)
        for name in ("em_fraction_jet_concentration", "em_fraction_particle_concentration"):
            require_range(f"jets.{name}", getattr(self, name), 0.0, 1e6, lo_open=True)
        require_range("jets.pileup_density", self.pileup_density, 0.0, 100.0)
        require_range("jets.pileup_pt_mean_gev", self.pileup_pt_mean_gev, 0.0, 10.0,
                      lo_open=True)
        for name in ("em_stochastic", "had_stochastic"):
            require_range(f"jets.{name}", getattr(self, name), 0.0, 2.0)
        for name in ("em_constant", "had_constant"):
            require_range(f"jets.{name}", getattr(self, name), 0.0, 0.5)
        unknown = sorted(set(self.mixed_fractions) - set(LABEL_NAMES))
        if unknown:
            raise ConfigError(f"jets.mixed_fractions has unknown class {unknown[0]!r}; allowed: "
                              + ", ".join(LABEL_NAMES))
        for k, v in self.mixed_fractions.items():
            require_range(f"jets.mixed_fractions.{k}", v, 0.0)
        if sum(self.mixed_fractions.values()) <= 0:
            raise ConfigError("jets.mixed_fractions must have a positive sum")
        bad = [s for s in self.preprocess if s not in PREPROCESS_STEPS]
        if bad:
            raise ConfigError(f"jets.preprocess step {bad[0]!r} is unknown; allowed: "
                              + ", ".join(PREPROCESS_STEPS))
        wanted = [s for s in PREPROCESS_STEPS if s in self.preprocess]
        if list(self.preprocess) != wanted:
            raise ConfigError(
                f"jets.preprocess {list(self.preprocess)} must list each step once, in the "
                f"order they are applied: {', '.join(wanted)}"
            )

    def _validate_darkshower(self) -> None:
        require_range("jets.darkshower_mediator_mass_gev", self.darkshower_mediator_mass_gev,
                      0.0, 5000.0, lo_open=True)
        require_range("jets.darkshower_alpha_dark", self.darkshower_alpha_dark, 0.0, 1.0)
        require_range("jets.darkshower_lambda_gev", self.darkshower_lambda_gev, 0.0, 100.0,
                      lo_open=True)
        require_range("jets.darkshower_pion_mass_gev", self.darkshower_pion_mass_gev, 0.0,
                      100.0, lo_open=True)
        require_range("jets.darkshower_pion_rho_mass_ratio",
                      self.darkshower_pion_rho_mass_ratio, 0.0, 1.0, lo_open=True)
        require_range("jets.darkshower_vector_fraction", self.darkshower_vector_fraction, 0.0, 1.0)
        require_range("jets.darkshower_r_inv", self.darkshower_r_inv, 0.0, 1.0)
        m_rho = self.darkshower_pion_mass_gev / self.darkshower_pion_rho_mass_ratio
        if m_rho >= 0.5 * self.darkshower_mediator_mass_gev:
            raise ConfigError(
                f"jets.darkshower_pion_mass_gev / darkshower_pion_rho_mass_ratio = {m_rho:g} GeV "
                "(the dark rho mass) must be below half of darkshower_mediator_mass_gev = "
                f"{self.darkshower_mediator_mass_gev:g}; lower the meson mass or raise the ratio"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JetConfig:
        return from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @property
    def pixel(self) -> float:
        """The effective pixel size (eta = phi)."""
        return self.pixel_size if self.pixel_size is not None else DEFAULT_WINDOW / self.image_size

    @property
    def window_half(self) -> float:
        """Half-width of the image window in eta and phi."""
        return 0.5 * self.image_size * self.pixel


