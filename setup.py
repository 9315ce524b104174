"""Builds the optional C frame loops (speechrnn/_ctc.c); all other settings are in
pyproject.toml. Where no C compiler is found the build goes on without it, and
speechrnn.decoding runs its pure-Python loop, with the same results."""

import sys

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "speechrnn._ctc", ["speechrnn/_ctc.c"], optional=True,
    # No fused multiply-adds: the C loops must round as the Python ones do.
    extra_compile_args=[] if sys.platform == "win32" else ["-ffp-contract=off"])])
