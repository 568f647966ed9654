"""Toy two-layer calorimeter jet images (qcd, darkphoton, top, darkshower) and jet-image files.

:mod:`.config` holds the settings, :mod:`.physics` the shower and calorimeter model,
:mod:`.files` trigkit's HDF5 layout and the readers of files from elsewhere.
"""

from .config import LABEL_NAMES, LABELS, SAMPLES, TRUTH_UNITS, JetConfig
from .files import convert_jet_file, read_jet_images, write_jets_h5
from .physics import generate, generate_constituents, iter_chunks, make_images

__all__ = [
    "LABELS", "LABEL_NAMES", "SAMPLES", "TRUTH_UNITS", "JetConfig", "convert_jet_file",
    "generate", "generate_constituents", "iter_chunks", "make_images", "read_jet_images",
    "write_jets_h5",
]
