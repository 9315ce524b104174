"""atheris fuzz target: the audio reader and `Recognizer.transcribe` on any bytes.

    python fuzz/fuzz_audio.py [libFuzzer options] [CORPUS_DIR]
    nice -n 10 python fuzz/fuzz_audio.py -max_total_time=600 -timeout=20 \\
        -rss_limit_mb=1500 /tmp/audio-corpus

An input is written to a file and read every way the runtime reads one (fuzz.inputs.
check_file); it must end in audio or an AudioError sentence naming the file, and
`transcribe` in a Transcript. Any other exception, a crash, more than -timeout seconds
or more than -rss_limit_mb of memory is a finding, saved by libFuzzer as crash-*,
timeout-* or oom-* (under -artifact_prefix). An input that starts with a known magic
number is used as it is; any other is read as a recipe: its first byte picks a WAV
header, a FLAC STREAMINFO or an AU header, whose fields (absurd rates, channel counts,
sizes, declared lengths) come from the following bytes. An empty CORPUS_DIR is seeded
with small valid files of every format (fuzz.inputs.seeds).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import atheris  # noqa: E402

with atheris.instrument_imports(include=["speechrnn", "fuzz"]):
    from fuzz.inputs import (  # noqa: E402
        MAGICS,
        FlacFields,
        WavFields,
        au_bytes,
        check_file,
        flac_bytes,
        seeds,
        wav_bytes,
    )
    from speechrnn.recognizer import Recognizer  # noqa: E402

RATES = [0, 1, 3999, 4000, 8000, 16000, 44100, 768000, 768001, 0xFFFFF, 2**31 - 1,
         2**32 - 1]
CHANNELS = [0, 1, 2, 8, 255, 256, 1024, 1025, 65535]
BITS = [0, 1, 4, 8, 12, 16, 24, 32, 33, 64, 65535]
SIZES = [0, 1, 2, 3, 44, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**36 - 1]
FLAC_TEMPLATE = seeds()["flac"]

_recognizer = None
_path = None


def _num(fdp, interesting: list[int], bits: int) -> int:
    if fdp.ConsumeBool():
        return fdp.PickValueInList(interesting)
    return fdp.ConsumeIntInRange(0, 2**bits - 1)


def recipe(data: bytes) -> bytes:
    """The file an input stands for (see the module docstring)."""
    if len(data) < 2 or data[:4] in MAGICS:
        return data
    fdp = atheris.FuzzedDataProvider(data[1:])
    kind = data[0] % 4
    if kind == 0:
        return data[1:]
    if kind == 1:
        fields = WavFields(
            format_tag=fdp.PickValueInList([1, 3, 6, 7, 0x11, 0xFFFE, 0, 0xFFFF]),
            channels=_num(fdp, CHANNELS, 16), sample_rate=_num(fdp, RATES, 32),
            byte_rate=None if fdp.ConsumeBool() else _num(fdp, SIZES, 32),
            block_align=None if fdp.ConsumeBool() else _num(fdp, [0, 1, 2, 4, 65535], 16),
            bits=_num(fdp, BITS, 16), fmt_size=fdp.PickValueInList([16, 18, 40, 14, 0, 2**31]),
            riff_size=None if fdp.ConsumeBool() else _num(fdp, SIZES, 32),
            data_size=None if fdp.ConsumeBool() else _num(fdp, SIZES, 32),
            junk_chunk=fdp.ConsumeBool())
        return wav_bytes(fields, fdp.ConsumeBytes(fdp.remaining_bytes()))
    if kind == 2:
        fields = FlacFields(
            min_block=None if fdp.ConsumeBool() else _num(fdp, [0, 1, 16, 4096, 65535], 16),
            max_block=None if fdp.ConsumeBool() else _num(fdp, [0, 1, 16, 4096, 65535], 16),
            sample_rate=None if fdp.ConsumeBool() else _num(fdp, RATES, 20),
            channels=None if fdp.ConsumeBool() else fdp.ConsumeIntInRange(1, 8),
            bits=None if fdp.ConsumeBool() else fdp.ConsumeIntInRange(1, 32),
            total_samples=None if fdp.ConsumeBool() else _num(fdp, SIZES, 36))
        body = flac_bytes(fields, FLAC_TEMPLATE)
        cut = fdp.ConsumeIntInRange(0, len(body))
        return body[:cut] + fdp.ConsumeBytes(fdp.remaining_bytes()) if fdp.ConsumeBool() \
            else body
    return au_bytes(encoding=_num(fdp, [1, 2, 3, 4, 5, 6, 7, 27, 0], 32),
                    sample_rate=_num(fdp, RATES, 32), channels=_num(fdp, CHANNELS, 32),
                    data_size=_num(fdp, SIZES + [0xFFFFFFFF], 32),
                    offset=fdp.PickValueInList([24, 28, 0, 8, 4096]),
                    payload=fdp.ConsumeBytes(fdp.remaining_bytes()))


def TestOneInput(data: bytes) -> None:  # noqa: N802 (atheris' name)
    global _recognizer, _path
    if _recognizer is None:
        _recognizer = Recognizer()
        _path = Path(tempfile.mkdtemp(prefix="fuzz-audio-",
                                      dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
                     ) / "input.wav"
    _path.write_bytes(recipe(data))
    check_file(_path, _recognizer)


def main(argv: list[str]) -> None:
    paths = [a for a in argv[1:] if not a.startswith("-")]
    if not any(os.path.isfile(p) for p in paths):  # files given: replay them only
        if not paths:
            paths = [tempfile.mkdtemp(prefix="fuzz-audio-corpus-")]
            argv = argv + paths
        folder = Path(paths[0])
        folder.mkdir(parents=True, exist_ok=True)
        if not any(folder.iterdir()):
            for name, data in seeds().items():
                (folder / name).write_bytes(data)
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
