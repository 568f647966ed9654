"""The contract of a generated design (``hw/<name>/``) that the rtl stage writes and the
cocotb runner, the testbench and synthesis read: ``rtl.json`` (parameters, latency, bit
layouts), the Verilog source list, the graph input layout of the data, and the packing of
``in_data`` / ``out_data`` of ``hw/common/trigkit_top.v``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from trigkit.core.card import code_range
from trigkit.core.errors import TrigkitError, one_line
from trigkit.core.paths import COMMON_HDL, RTL_JSON

#: Name of the per-model adapter module that ``trigkit_top`` instantiates.
CORE_MODULE = "trigkit_core"
#: Hand-written HDL every design uses, and the Verilator control file of its ports.
COMMON_SOURCES = ("trigkit_top.v",)
VERILATOR_CONTROL = ("trigkit_top.vlt",)


def load_rtl_info(hw_dir: str | Path) -> dict:
    """rtl.json of a generated design."""
    path = Path(hw_dir) / RTL_JSON
    if not path.is_file():
        raise TrigkitError(f"{path} not found: this model has no RTL yet; generate it first "
                           f"(trigkit rtl --model {Path(hw_dir).name})")
    return json.loads(path.read_text())


def rtl_sources(hw_dir: str | Path, info: dict, verilator_control: bool = False) -> list[Path]:
    """The design's Verilog files (rtl.json order) and the shared top level (plus its Verilator
    control file when asked); every one must exist."""
    hw_dir = Path(hw_dir)
    srcs = [hw_dir / s for s in info["sources"]]
    srcs += [COMMON_HDL / s for s in info.get("common_sources", COMMON_SOURCES)]
    if verilator_control:
        srcs += [COMMON_HDL / s for s in info.get("verilator_control", VERILATOR_CONTROL)]
    missing = [str(s) for s in srcs if not s.is_file()]
    if missing:
        raise TrigkitError(f"RTL sources missing: {', '.join(missing)}; regenerate the RTL "
                           f"(trigkit rtl --model {hw_dir.name})")
    return srcs


def graph_layout(images: np.ndarray, want: tuple[int, ...]) -> np.ndarray:
    """(N, *data shape) -> (N, *want), the channels-last graph input: a (H, W) image gains a
    channel axis, a (C, H, W) one is transposed to (H, W, C), a 1-D (C, L) one to (L, 1, C)
    (how the export makes 1-D conv nets 2-D); vectors pass unchanged."""
    images = np.asarray(images)
    want = tuple(int(d) for d in want)
    if images.shape[1:] == want:
        return images
    if images.shape[1:] + (1,) == want:
        return images[..., None]
    if (1,) + images.shape[1:] == want:
        return images[:, None]
    if images.ndim == 4 and images.shape[2:] + images.shape[1:2] == want:
        return images.transpose(0, 2, 3, 1)
    if images.ndim == 3 and (images.shape[2], 1, images.shape[1]) == want:
        return images.transpose(0, 2, 1)[:, :, None, :]  # 1-D (C, L) -> (L, 1, C)
    raise TrigkitError(f"images of shape {list(images.shape[1:])} do not fit the model "
                       f"input {list(want)}")


def pack_inputs(x: np.ndarray, bits: int, signed: bool = False) -> list[int]:
    """Flattened inputs (N, n_in) -> one ``in_data`` integer per event: element ``p`` at bits
    ``[p*bits, (p+1)*bits)``, two's complement when ``signed``."""
    x = np.asarray(x).reshape(len(x), -1).astype(np.int64)
    check_input_range(x, bits, signed, "the RTL input")
    x = x & ((1 << bits) - 1)
    shifts = np.arange(bits, dtype=np.int64)
    planes = ((x[:, :, None] >> shifts) & 1).astype(np.uint8).reshape(len(x), -1)
    packed = np.packbits(planes, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def check_input_range(x: np.ndarray, bits: int, signed: bool, what: str) -> None:
    """Refuse inputs outside the ``bits``-bit (two's complement when ``signed``) code range."""
    lo, hi = code_range(bits, signed)
    if x.size and (x.min() < lo or x.max() > hi):
        kind = "signed" if signed else "unsigned"
        raise TrigkitError(f"inputs in [{x.min()}, {x.max()}] lie outside the {bits}-bit {kind} "
                           f"range [{lo}, {hi}] of {what}")


def unpack_outputs(words: list[int], layout: dict) -> np.ndarray:
    """``out_data`` integers -> (N, n_out) int64 reference integers (``rtl.json["output"]``)."""
    n, w = layout["n"], layout["word_bits"]
    signed, shift = layout["signed"], layout["word_shift"]
    mask = (1 << w) - 1
    out = np.empty((len(words), n), dtype=np.int64)
    for e, word in enumerate(words):
        for j in range(n):
            v = (int(word) >> (j * w)) & mask
            if signed and v >> (w - 1):
                v -= 1 << w
            out[e, j] = v << shift
    return out


def load_vectors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """vectors.npz (``x``, ``y_int``, ``y_exp``, ``y``; sw/docs/files.md), checked: readable
    without pickles, every array present, one output row per input, integer outputs whose values
    equal ``y_int * 2**y_exp``."""
    path = Path(path)
    if not path.is_file():
        raise TrigkitError(f"{path} not found; export the model first (trigkit export)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            v = {k: npz[k] for k in ("x", "y_int", "y_exp", "y") if k in npz.files}
    except Exception as err:  # noqa: BLE001 - zip, pickle and format errors alike
        raise TrigkitError(f"{path} is not a readable vectors file "
                           f"({type(err).__name__}: {one_line(err)})") from None
    missing = [k for k in ("x", "y_int", "y_exp", "y") if k not in v]
    if missing:
        raise TrigkitError(f"{path} has no {missing[0]!r} array; export the model again")
    x, y_int, y_exp, y = v["x"], v["y_int"], v["y_exp"], v["y"]
    if x.ndim < 2 or len(x) == 0 or len(y_int) != len(x) or y.shape != y_int.shape:
        raise TrigkitError(f"{path}: {len(x)} inputs of shape {list(x.shape[1:])} but outputs "
                           f"y_int {list(y_int.shape)} and y {list(y.shape)}; export again")
    if x.dtype.kind not in "iub" or y_int.dtype.kind not in "iu" or y_exp.dtype.kind not in "iu":
        raise TrigkitError(f"{path}: x, y_int and y_exp must be integer arrays (got {x.dtype}, "
                           f"{y_int.dtype}, {y_exp.dtype})")
    if not np.array_equal(y_int.astype(np.float64) * 2.0 ** y_exp.astype(np.float64), y):
        raise TrigkitError(f"{path}: y differs from y_int * 2**y_exp; the file is damaged")
    return v
