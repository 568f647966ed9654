"""QONNX -> hls4ml C++ (Vitis backend), compiled for its C simulation, with every precision
derived from the graph's quantisers (:mod:`trigkit.firmware.hls_precision`).

Compiled projects are cached by a hash of the ONNX bytes, io_type, part, clock, hls4ml version and
the derived config (``trigkit_hls.json`` in the project directory). A cache hit loads the compiled
shared library through ctypes, like hls4ml does, without converting or compiling anything, but
only a library this machine compiled itself: its SHA-256 must be recorded, with the same key, in
the per-user cache (``~/.cache/trigkit/hls_built/``); anything else is rebuilt, never loaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from trigkit.core.errors import TrigkitError
from trigkit.core.io import write_text_atomic
from trigkit.core.paths import USER_CACHE

from .hls_precision import hls_config_from_qonnx, quiet_hls4ml
from .reference import firmware_model

#: Version of the conversion code (not visible in the config); part of the cache key.
CACHE_VERSION = 1
#: File in a project directory that records what was compiled there.
STAMP_FILE = "trigkit_hls.json"
#: hls4ml log of the conversion and compilation, in the project directory.
LOG_FILE = "trigkit_hls.log"
#: HLS project (top function) name.
PROJECT_NAME = "trigkit_nn"
#: Records of the libraries this machine compiled (one file per library, named by its SHA-256).
BUILT_HERE = USER_CACHE / "hls_built"
#: Copy of the converted ONNX graph kept in the project directory.
ONNX_COPY = "trigkit_model.onnx"

# ---------------------------------------------------------------------------------------------
# Project build, cache and prediction
# ---------------------------------------------------------------------------------------------


def graph_hash(onnx_path: str | os.PathLike, io_type: str, part: str, clock_ns: float,
               config: dict | None = None) -> str:
    """Cache key: ONNX bytes, io_type, part, clock, hls4ml version and the derived hls4ml config.

    The config (derived in milliseconds) stands for the precision rules: a change of the rules
    changes the key, a cosmetic edit of this module does not. :data:`CACHE_VERSION` covers
    changes of the conversion that the config does not show.
    """
    import hls4ml
    from qonnx.core.modelwrapper import ModelWrapper

    data = Path(onnx_path).read_bytes()
    if config is None:
        config = hls_config_from_qonnx(ModelWrapper(data))
    h = hashlib.sha256(data)
    h.update(json.dumps([io_type, part, float(clock_ns), hls4ml.__version__, PROJECT_NAME,
                         CACHE_VERSION]).encode())
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    return h.hexdigest()


class HLSProject:
    """A compiled hls4ml project: C simulation through its shared library.

    Attributes:
        out_dir: project directory (``firmware/``, ``build_prj.tcl``, ...).
        graph_hash: cache key of what was compiled (see :func:`graph_hash`).
        config: the hls4ml config used (every precision derived).
        from_cache: True when the compiled library was reused without converting or compiling.
        build_seconds: time spent converting and compiling (0 for a cache hit).
        hls_model: the hls4ml ModelGraph for a fresh build, None for a cache hit.
    """

    def __init__(self, out_dir: Path, stamp: dict, from_cache: bool, build_seconds: float,
                 hls_model=None):
        self.out_dir = Path(out_dir)
        self.graph_hash: str = stamp["hash"]
        self.config: dict = stamp["config"]
        self.io_type: str = stamp["io_type"]
        self.input_shape = tuple(stamp["input_shape"])
        self.output_shape = tuple(stamp["output_shape"])
        self.from_cache = from_cache
        self.build_seconds = build_seconds
        self.hls_model = hls_model
        self._stamp = stamp
        self.library = self.out_dir / stamp["library"]
        lib = ctypes.cdll.LoadLibrary(str(self.library.resolve()))
        self._fn = getattr(lib, f"{stamp['project']}_double")
        self._fn.restype = None
        ptr = np.ctypeslib.ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")
        self._fn.argtypes = [ptr, ptr]

    def predict(self, x_nhwc: np.ndarray) -> np.ndarray:
        """C-simulation outputs (float64, shape (N, *output)) for a batch (or one sample)."""
        x = np.asarray(x_nhwc, dtype=np.float64)
        single = x.shape == self.input_shape
        if single:
            x = x[None]
        if x.shape[1:] != self.input_shape:
            raise TrigkitError(f"input shape {list(x.shape)} does not match the project's "
                               f"(N, {', '.join(map(str, self.input_shape))}) (NHWC)")
        n_out = int(np.prod(self.output_shape))
        y = np.zeros((len(x), n_out), dtype=np.float64)
        for i in range(len(x)):
            xi = np.ascontiguousarray(x[i].ravel())
            yi = np.zeros(n_out, dtype=np.float64)
            self._fn(xi, yi)
            y[i] = yi
        y = y.reshape((len(x), *self.output_shape))
        return y[0] if single else y

    def hls4ml_model(self):
        """The hls4ml ModelGraph, linked to the compiled library without recompiling.

        For a cache hit the graph is converted again from the ONNX copy in the project (about a
        second; nothing is written or compiled) and its ``_top_function_lib`` is set to the
        existing shared library, which is all hls4ml's ``predict`` needs.
        """
        if self.hls_model is None:
            from hls4ml.converters import convert_from_onnx_model
            from qonnx.core.modelwrapper import ModelWrapper

            mw = ModelWrapper(str(self.out_dir / ONNX_COPY))
            with quiet_hls4ml():
                hm = convert_from_onnx_model(
                    mw.model, output_dir=str(self.out_dir), project_name=self._stamp["project"],
                    backend="Vitis", io_type=self.io_type,
                    hls_config=json.loads(json.dumps(self.config)), part=self._stamp["part"],
                    clock_period=self._stamp["clock_ns"])
            hm._top_function_lib = ctypes.cdll.LoadLibrary(str(self.library.resolve()))
            self.hls_model = hm
        return self.hls_model

    def __repr__(self) -> str:
        return (f"HLSProject({str(self.out_dir)!r}, hash={self.graph_hash[:12]}, "
                f"io_type={self.io_type!r}, from_cache={self.from_cache})")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _record_built(library: Path, key: str) -> None:
    """Remember (outside the project, per user) that this machine compiled ``library``."""
    BUILT_HERE.mkdir(parents=True, exist_ok=True)
    write_text_atomic(BUILT_HERE / _file_sha256(library), key + "\n")


def built_here(library: Path, key: str) -> bool:
    """Whether ``library`` is, byte for byte, a library this machine compiled for ``key``: a
    project directory handed over by someone else is rebuilt, never loaded into the process."""
    record = BUILT_HERE / _file_sha256(library)
    return record.is_file() and record.read_text().strip() == key


def _read_stamp(out_dir: Path, key: str) -> dict | None:
    try:
        stamp = json.loads((out_dir / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("hash") != key:
        return None
    library = out_dir / str(stamp.get("library", ""))
    if not library.is_file() or not built_here(library, key):
        return None
    return stamp


def build_hls_project(onnx_path: Path, out_dir: Path, io_type: str = "io_parallel",
                      part: str = "xcvu13p-flga2577-2-e", clock_ns: float = 3.125,
                      cache_dir: Path | None = None) -> HLSProject:
    """Convert a cleaned QONNX file with hls4ml (Vitis backend) and compile its C simulation.

    hls4ml gets the firmware part of the graph (:func:`~.reference.firmware_model`): a graph
    with input preprocessing takes the input quantiser's values (``codes * 2**input_exp``),
    one with a float tail gives the integers before it.

    Reuses ``out_dir`` when it already holds the compiled library of the same cache key, else a
    copy from ``cache_dir/<key>`` when given; a fresh build is copied into ``cache_dir`` too.
    """
    from qonnx.core.modelwrapper import ModelWrapper

    if io_type not in ("io_parallel", "io_stream"):
        raise TrigkitError(f"io_type {io_type!r}: use 'io_parallel' or 'io_stream'")
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    if not onnx_path.is_file():
        raise TrigkitError(f"ONNX file {onnx_path} does not exist")
    mw = drop_batch_axis_of_constants(firmware_model(ModelWrapper(str(onnx_path))))
    cfg = hls_config_from_qonnx(mw)  # refuses incompatible graphs before any cache lookup
    key = graph_hash(onnx_path, io_type, part, clock_ns, cfg)

    stamp = _read_stamp(out_dir, key)
    if stamp is None and cache_dir is not None:
        cached = Path(cache_dir) / key[:16]
        if _read_stamp(cached, key) is not None:
            _replace_dir(out_dir)
            shutil.copytree(cached, out_dir)
            stamp = _read_stamp(out_dir, key)
    if stamp is not None:
        return HLSProject(out_dir, stamp, from_cache=True, build_seconds=0.0)

    t0 = time.perf_counter()
    _replace_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hls_model, library = _convert_and_compile(mw, cfg, out_dir, io_type, part, clock_ns)
    shutil.copyfile(onnx_path, out_dir / ONNX_COPY)
    inp = mw.get_tensor_shape(mw.graph.input[0].name)
    outp = mw.get_tensor_shape(mw.graph.output[0].name)
    stamp = {
        "hash": key, "io_type": io_type, "part": part, "clock_ns": clock_ns,
        "project": PROJECT_NAME, "library": str(library.relative_to(out_dir)),
        "input_shape": list(inp[1:]), "output_shape": list(outp[1:]),
        "onnx": str(onnx_path), "config": cfg,
    }
    _record_built(library, key)
    write_text_atomic(out_dir / STAMP_FILE, json.dumps(stamp, indent=1, default=str))
    seconds = time.perf_counter() - t0
    if cache_dir is not None:
        cached = Path(cache_dir) / key[:16]
        _replace_dir(cached)
        shutil.copytree(out_dir, cached)
    return HLSProject(out_dir, stamp, from_cache=False, build_seconds=seconds,
                      hls_model=hls_model)


def drop_batch_axis_of_constants(mw):
    """Per-channel operands of Add / Sub / Mul / Div without their leading batch axis
    ((1, 1, 1, C) -> (1, 1, C)): the same broadcast in ONNX, and the shape hls4ml's
    ApplyAlpha can broadcast onto a layer without batch axis (it fails on the 4-D one)."""
    for node in mw.graph.node:
        if node.op_type not in ("Add", "Sub", "Mul", "Div"):
            continue
        value = mw.get_initializer(node.input[1])
        data_rank = len(mw.get_tensor_shape(node.input[0]) or [])
        if value is not None and value.ndim == data_rank and value.ndim > 1 and value.shape[0] == 1:
            mw.set_initializer(node.input[1], value.reshape(value.shape[1:]))
    return mw


def _replace_dir(path: Path) -> None:
    """Remove a previous trigkit project directory (only one carrying our stamp file)."""
    if path.exists():
        if not (path / STAMP_FILE).exists() and any(path.iterdir()):
            if not (path / "firmware").is_dir():
                raise TrigkitError(f"{path} exists and is not an hls4ml project; choose an empty "
                                   "or new output directory")
        shutil.rmtree(path)


def _convert_and_compile(mw, cfg: dict, out_dir: Path, io_type: str, part: str,
                         clock_ns: float):
    from hls4ml.converters import convert_from_onnx_model

    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            hls_model = convert_from_onnx_model(
                mw.model, output_dir=str(out_dir), project_name=PROJECT_NAME, backend="Vitis",
                io_type=io_type, hls_config=json.loads(json.dumps(cfg)), part=part,
                clock_period=clock_ns)
            hls_model.compile()
    except Exception as exc:
        (out_dir / LOG_FILE).write_text(log.getvalue())
        raise TrigkitError(f"hls4ml conversion/compilation failed ({exc}); log in "
                           f"{out_dir / LOG_FILE}") from exc
    (out_dir / LOG_FILE).write_text(log.getvalue())
    stamp = hls_model.config.get_config_value("Stamp")
    library = out_dir / "firmware" / f"{PROJECT_NAME}-{stamp}.so"
    if not library.is_file():
        raise TrigkitError(f"hls4ml compiled no library at {library}; log in {out_dir / LOG_FILE}")
    return hls_model, library
