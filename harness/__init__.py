"""TinyGPT Harness: parity, contracts and speed curves for TinyGPT's kernels on every host."""

__version__ = "0.1.0"
