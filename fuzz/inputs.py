"""Audio files for fuzzing: valid seeds, WAV/FLAC/AU headers rebuilt from chosen (often
absurd) field values, and the oracle every input must satisfy.

Shared by the atheris target (fuzz/fuzz_audio.py) and the hypothesis tests
(tests/test_fuzz_audio.py), so both check the same contract.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from speechrnn.audio import AudioError, audio_info, iter_blocks, read_audio

MAGICS = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b".snd", b"ID3\x03")


def _tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * np.hanning(len(t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def encode(audio: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def seeds() -> dict[str, bytes]:
    """Small valid files in every container and sample format the reader meets."""
    out = {}
    for subtype in ("PCM_16", "PCM_U8", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW",
                    "ALAW", "IMA_ADPCM", "MS_ADPCM"):
        out[f"wav_{subtype.lower()}"] = encode(_tone(0.1, 8000), 8000, "WAV", subtype)
    out["wav_stereo_44k"] = encode(_tone(0.05, 44100, 2), 44100, "WAV", "PCM_16")
    out["flac"] = encode(_tone(0.2, 16000), 16000, "FLAC", "PCM_16")
    out["flac_stereo_48k"] = encode(_tone(0.1, 48000, 2), 48000, "FLAC", "PCM_24")
    out["ogg"] = encode(_tone(0.3, 16000), 16000, "OGG", "VORBIS")
    out["aiff"] = encode(_tone(0.1, 8000), 8000, "AIFF", "PCM_16")
    out["au"] = encode(_tone(0.1, 8000), 8000, "AU", "PCM_16")
    return out


# -- headers from fields ------------------------------------------------------------


@dataclass
class WavFields:
    """Every field of a canonical WAV header; None means the consistent value."""

    format_tag: int = 1
    channels: int = 1
    sample_rate: int = 16000
    byte_rate: int | None = None
    block_align: int | None = None
    bits: int = 16
    fmt_size: int = 16
    riff_size: int | None = None
    data_size: int | None = None
    junk_chunk: bool = False  # an extra chunk before "data"


def wav_bytes(fields: WavFields, payload: bytes) -> bytes:
    f = fields
    align = f.block_align if f.block_align is not None else f.channels * f.bits // 8
    rate = f.byte_rate if f.byte_rate is not None else f.sample_rate * align
    fmt = struct.pack("<HHIIHH", f.format_tag & 0xFFFF, f.channels & 0xFFFF,
                      f.sample_rate & 0xFFFFFFFF, rate & 0xFFFFFFFF, align & 0xFFFF,
                      f.bits & 0xFFFF)
    # Extension bytes, zeroed; a huge declared fmt size gets at most 64 bytes (the
    # file claims more than it holds, which is the point).
    fmt = (fmt + bytes(48))[:max(16, min(f.fmt_size, 64))]
    body = b"WAVE" + b"fmt " + struct.pack("<I", f.fmt_size & 0xFFFFFFFF) + fmt
    if f.junk_chunk:
        body += b"LIST" + struct.pack("<I", 4) + b"INFO"
    size = len(payload) if f.data_size is None else f.data_size
    body += b"data" + struct.pack("<I", size & 0xFFFFFFFF) + payload
    riff = len(body) if f.riff_size is None else f.riff_size
    return b"RIFF" + struct.pack("<I", riff & 0xFFFFFFFF) + body


@dataclass
class FlacFields:
    """STREAMINFO of a FLAC file; None keeps the encoder's value."""

    min_block: int | None = None
    max_block: int | None = None
    sample_rate: int | None = None  # 20 bits
    channels: int | None = None  # 1-8
    bits: int | None = None  # 4-32
    total_samples: int | None = None  # 36 bits; 0 means unknown


def flac_bytes(fields: FlacFields, template: bytes) -> bytes:
    """`template` (a real FLAC file) with its STREAMINFO fields replaced."""
    assert template[:4] == b"fLaC"
    info = bytearray(template[8:8 + 34])
    (min_block, max_block) = struct.unpack(">HH", info[:4])
    packed = int.from_bytes(info[10:18], "big")
    rate, ch, bps, total = (packed >> 44, (packed >> 41) & 7, (packed >> 36) & 31,
                            packed & ((1 << 36) - 1))
    f = fields
    min_block = min_block if f.min_block is None else f.min_block & 0xFFFF
    max_block = max_block if f.max_block is None else f.max_block & 0xFFFF
    rate = rate if f.sample_rate is None else f.sample_rate & 0xFFFFF
    ch = ch if f.channels is None else (f.channels - 1) & 7
    bps = bps if f.bits is None else (f.bits - 1) & 31
    total = total if f.total_samples is None else f.total_samples & ((1 << 36) - 1)
    info[:4] = struct.pack(">HH", min_block, max_block)
    info[10:18] = ((rate << 44) | (ch << 41) | (bps << 36) | total).to_bytes(8, "big")
    return template[:8] + bytes(info) + template[8 + 34:]


def au_bytes(encoding: int, sample_rate: int, channels: int, data_size: int,
             payload: bytes, offset: int = 24) -> bytes:
    header = struct.pack(">4sIIIII", b".snd", offset & 0xFFFFFFFF, data_size & 0xFFFFFFFF,
                         encoding & 0xFFFFFFFF, sample_rate & 0xFFFFFFFF,
                         channels & 0xFFFFFFFF)
    return header + bytes(max(0, offset - 24)) + payload


# -- the contract ---------------------------------------------------------------------


class ContractError(AssertionError):
    """An input broke the reader's or transcribe's contract."""


def _sentence(message: str, path: Path) -> None:
    if str(path) not in message or "\n" in message or "Traceback" in message:
        raise ContractError(f"not one sentence naming the file: {message!r}")


def _audio(x, what: str) -> None:
    if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 1):
        raise ContractError(f"{what} gave {type(x).__name__} {getattr(x, 'dtype', '')}")
    if not np.isfinite(x).all():
        raise ContractError(f"{what} gave non-finite samples")


def check_file(path: Path, recognizer=None) -> str:
    """Read `path` every way the runtime does (and transcribe it if a recognizer is
    given); return "ok" or "error". Raises ContractError, or lets any other exception
    through, when the input is not handled by a result or an AudioError sentence."""
    outcomes = set()
    try:
        info = audio_info(path)
        if info.frames <= 0 or info.sample_rate <= 0 or info.channels <= 0:
            raise ContractError(f"audio_info accepted {info}")
        outcomes.add("ok")
    except AudioError as e:
        _sentence(str(e), path)
        outcomes.add("error")
    for what, read in (("read_audio", read_audio),
                       ("iter_blocks", lambda p: list(iter_blocks(p, block_seconds=1.0)))):
        try:
            out = read(path)
        except AudioError as e:
            _sentence(str(e), path)
            continue
        for block in out if isinstance(out, list) else [out]:
            _audio(block, what)
    if recognizer is not None:
        t = recognizer.transcribe(path)
        if t.error is not None:
            _sentence(t.error, path)
            if t.segments or t.text:
                raise ContractError("a failed transcript has segments")
        for s in t.segments:
            if not (0 <= s.start <= s.end and 0.0 <= s.confidence <= 1.0):
                raise ContractError(f"bad segment {s}")
        outcomes.add("error" if t.error else "ok")
    return "error" if "error" in outcomes else "ok"
