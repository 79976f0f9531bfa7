"""Benchmarks beside the library: they import :mod:`pipeline`, never the other way round.

- :mod:`benchmarks.paper`: the paper's inverse problems solved by three routes to the
  derivatives (nested autograd, the mollifier layer, and DeepXDE as an outside peer); the
  harness behind ``chromarate bench``, shipped with the package.
- :mod:`benchmarks.endtoend`: synthetic images and one ``process_image`` run in a fresh
  process (throughput and peak memory), used by the scripts here.
- The scripts (``python benchmarks/<name>.py``) regenerate the numbers in ``docs/``.

A benchmark calls the library's public functions only; it never patches product code.
"""
