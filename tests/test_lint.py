"""The code keeps to the project's lint rules ([tool.ruff] in pyproject.toml).

ruff comes with the test extra, so the README's test command (and CI) checks them.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ["speechrnn", "training", "export", "benchmarks", "tests", "examples", "fuzz"]


def test_ruff_finds_nothing():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *CHECKED],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
