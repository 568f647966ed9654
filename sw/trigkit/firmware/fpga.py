"""FPGA device figures the reports compare against."""

#: Resources of a Xilinx Virtex UltraScale+ VU13P (the default ``hardware.part``).
VU13P = {"lut": 1_728_000, "ff": 3_456_000, "dsp": 12_288, "bram": 2_688}
