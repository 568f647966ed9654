"""The training core every model shares: network builders (:mod:`.models`, float PyTorch or
Brevitas QAT), data splits and streaming (:mod:`.data`), the deterministic, resumable trainer
(:mod:`.train`), the WGAN-GP (:mod:`.gan`), decorrelation penalties (:mod:`.decorrelate`) and
metrics (:mod:`.metrics`). It knows no detector or generator: the domains register their data
in :mod:`trigkit.core.registry`."""
