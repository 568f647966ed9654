"""cocotb testbench of the hand-written front end hw/common/row_clusters.v against its integer twin
(trigkit.learn.frontend.row_clusters_numpy).

Inputs (environment variables): TRIGKIT_RESULTS (json file for the results), TRIGKIT_SEED.
The module's ROWS, WIDTH and FEAT_BITS are read from the design. One image per clock cycle
(initiation interval 1); the features of the image sampled at cycle t are read at t + 4.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from trigkit.learn.frontend import row_clusters_numpy

LATENCY = 4


def edge_images(rows: int, width: int, rng: random.Random) -> np.ndarray:
    """Empty and full rows, single hits at every chunk boundary (16 and 128 columns) and the
    row ends, pairs of hits, runs, and random images of low and high occupancy."""
    imgs = [np.zeros((rows, width), np.uint8), np.ones((rows, width), np.uint8)]
    cols = sorted({c for b in range(0, width + 1, 16) for c in (b - 1, b) if 0 <= c < width}
                  | {0, width - 1})
    for c in cols:
        img = np.zeros((rows, width), np.uint8)
        img[:, c] = 1
        imgs.append(img)
    for _ in range(64):
        img = np.zeros((rows, width), np.uint8)
        for r in range(rows):
            for c in rng.sample(range(width), rng.choice((0, 1, 2, 3))):
                img[r, c:c + rng.choice((1, 2, 3))] = 1
        imgs.append(img)
    for p in (0.01, 0.1, 0.5, 0.9):
        for _ in range(8):
            imgs.append(np.array([[rng.random() < p for _ in range(width)]
                                  for _ in range(rows)], np.uint8))
    return np.stack(imgs)


def pack(img: np.ndarray) -> int:
    bits = np.packbits(img.reshape(-1), bitorder="little")
    return int.from_bytes(bits.tobytes(), "little")


def unpack(word: int, n: int, bits: int) -> np.ndarray:
    return np.array([(word >> (p * bits)) & ((1 << bits) - 1) for p in range(n)], np.int64)


@cocotb.test()
async def features_match_twin(dut):
    """Every image: the four features per row equal the numpy twin's, one image per cycle."""
    rows, width = int(dut.ROWS.value), int(dut.WIDTH.value)
    bits = int(dut.FEAT_BITS.value)
    imgs = edge_images(rows, width, random.Random(int(os.environ.get("TRIGKIT_SEED", "1"))))
    want = row_clusters_numpy(imgs)
    Clock(dut.clk, 4, unit="ns").start(start_high=False)
    got = []
    for t in range(len(imgs) + LATENCY):
        await FallingEdge(dut.clk)
        if t >= LATENCY:
            got.append(unpack(int(dut.features.value.to_unsigned()), 4 * rows, bits))
        dut.hits.value = pack(imgs[t]) if t < len(imgs) else 0
    got = np.stack(got)
    mismatches = int(np.any(got != want, axis=1).sum())
    with open(os.environ["TRIGKIT_RESULTS"], "w") as fh:
        json.dump({"vectors": len(imgs), "mismatches": mismatches, "rows": rows,
                   "width": width}, fh)
    assert mismatches == 0, f"{mismatches} of {len(imgs)} images differ from the numpy twin"
