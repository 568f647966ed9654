"""trigkit: FPGA-first trigger co-design for particle physics."""

__version__ = "0.1.0"
