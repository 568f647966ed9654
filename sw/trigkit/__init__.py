"""trigkit: FPGA-first trigger co-design for particle physics."""

__version__ = "0.1.0"


def load(model_dir):
    """Load an exported model (``build/<name>`` or its ONNX file) for integer-exact inference.

    ``trigkit.load("build/l0_pointing_tnn").predict(hits)`` runs batches of images (numpy
    (N, 9, 384) or an HDF5 file path) and returns the network outputs.
    """
    from .reference import load as _load

    return _load(model_dir)
