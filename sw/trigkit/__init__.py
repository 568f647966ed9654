"""trigkit: FPGA-first trigger co-design for particle physics.

The package is a house of rooms (see sw/docs/architecture.md): :mod:`trigkit.core`
(cards, config, files, registry), the domains :mod:`trigkit.l0` and :mod:`trigkit.offline`,
the training core :mod:`trigkit.learn`, :mod:`trigkit.evaluate`, :mod:`trigkit.firmware` and
the stages of :mod:`trigkit.pipeline`, driven by :mod:`trigkit.cli`.
"""

__version__ = "0.1.0"


def load(name_or_dir, exact=None):
    """A trained model for inference.

    ``trigkit.load("l0_pointing_tnn").predict(hits_or_file)`` scores a numpy array (the data
    layout, e.g. (N, 9, 384) hit images) or a file in the card's input format, with the integer
    reference of the exported graph (``exact``, the default for exported quantised models) or
    the trained network. A build directory or ONNX file (``trigkit.load("build/NAME")``) gives
    that graph's integer reference.
    """
    # imported here: `import trigkit` (for __version__) must not load torch and the firmware
    from trigkit.pipeline.predict import load_predictor

    return load_predictor(name_or_dir, exact)
