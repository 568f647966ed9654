"""trigkit: FPGA-first trigger co-design for particle physics.

The package is a house of rooms (see sw/docs/architecture.md): :mod:`trigkit.core`
(cards, config, files, registry), the domains :mod:`trigkit.l0` and :mod:`trigkit.offline`,
the training core :mod:`trigkit.learn`, :mod:`trigkit.evaluate`, :mod:`trigkit.firmware` and
the stages of :mod:`trigkit.pipeline`, driven by :mod:`trigkit.cli`.
"""

__version__ = "0.1.0"


def load(model_dir):
    """Load an exported model (``build/<name>`` or its ONNX file) for integer-exact inference.

    ``trigkit.load("build/l0_pointing_tnn").predict(hits)`` runs batches of images (numpy
    (N, 9, 384) or an HDF5 file path) and returns the network outputs.
    """
    # imported here: `import trigkit` (for __version__) must not load the firmware stack
    from trigkit.firmware.reference import load as load_reference

    return load_reference(model_dir)
