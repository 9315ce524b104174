"""speechrnn: offline speech-command recognition with a BiLSTM-CTC model run by onnxruntime.

`from speechrnn import Recognizer`; the names below are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "Recognizer": "speechrnn.recognizer",
    "Transcript": "speechrnn.recognizer",
    "Segment": "speechrnn.recognizer",
    "Result": "speechrnn.recognizer",
    "ModelSession": "speechrnn.session",
    "ModelError": "speechrnn.session",
    "AudioError": "speechrnn.audio",
    "CommandsError": "speechrnn.commands",
}

if TYPE_CHECKING:
    from speechrnn.audio import AudioError
    from speechrnn.commands import CommandsError
    from speechrnn.recognizer import Recognizer, Result, Segment, Transcript
    from speechrnn.session import ModelError, ModelSession

__all__ = ["AudioError", "CommandsError", "ModelError", "ModelSession", "Recognizer",
           "Result", "Segment", "Transcript", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import speechrnn` (and `speechrnn --help`) stay fast.
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'speechrnn' has no attribute {name!r}")
