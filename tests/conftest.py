"""Shared pytest setup: lets plain `pytest` import the checkout's packages.

`training` and `export` are not installed, so the repository root goes on sys.path.
"""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


TINY_COMMANDS = ["yes", "no", "stop", "turn on the light"]


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A small randomly initialised model exported to ONNX with full metadata.

    For testing plumbing only: its outputs are noise, so tests that need real
    recognition use the bundled model instead.
    """
    pytest.importorskip("torch", reason="torch is needed to build the test model")
    pytest.importorskip("onnx", reason="onnx is needed to build the test model")
    import torch

    from export.onnx_export import build_metadata, export_onnx
    from training.model import CTCModel, ModelConfig

    torch.manual_seed(0)
    config = ModelConfig(proj_dim=16, hidden=16, layers=1)
    metadata = build_metadata(config, model_version="tiny-random-test",
                              training_data="none (random weights)",
                              commands=TINY_COMMANDS)
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    return export_onnx(CTCModel(config), path, metadata)
