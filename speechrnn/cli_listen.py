"""The `speechrnn devices` and `speechrnn listen` subcommands: live recognition from a
microphone (or a file played like one), shown in the terminal or printed as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from speechrnn.cli import add_decoder_options

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_THRESHOLD = 0.75  # as speechrnn.recognizer.DEFAULT_THRESHOLD; not imported for speed
METER_DB = 60.0  # the level meter spans -60..0 dB full scale
STATUS_EVERY = 0.1  # seconds between redraws of the status line

LISTEN_EPILOG = """\
events (with --jsonl, one JSON object per line on stdout and nothing else):
  {"type": "partial" | "command" | "rejected", "text": str, "confidence": float,
   "start": float, "end": float, "latency": float}
  partial   the words heard so far, a few times a second while someone speaks
  command   a command from the list, once its speech has ended (text: the command)
  rejected  speech that was no command, or not surely (text: the closest command)
  start and end are seconds of stream time; latency is wall-clock seconds from the
  arrival of the audio block that held the end of the speech to the event.

The level meter and the partial text are drawn on stderr when it is a terminal. Stop
with Ctrl-C: a summary (duration, commands, rejected, overflows) goes to stderr.

exit status: 0 stopped by Ctrl-C or end of --input, 1 the device was lost or the input
file is damaged, 2 no usable device, model, commands or input file.

examples:
  speechrnn devices
  speechrnn listen
  speechrnn listen --device 2 --commands commands.txt
  speechrnn listen --jsonl | my-program
  speechrnn listen --input recording.wav --realtime
  arecord -f S16_LE -r 16000 -t wav | speechrnn listen --input -
"""


def add_parsers(subparsers) -> None:
    d = subparsers.add_parser(
        "devices", help="list audio input devices",
        description="List the audio input devices: index, name, native sample rate, "
                    "input channels and host API; * marks the default.")
    d.add_argument("--jsonl", action="store_true", help="one JSON object per device")
    d.set_defaults(func=run_devices)

    p = subparsers.add_parser(
        "listen", help="recognize commands live from a microphone",
        description="Recognize spoken commands live from a microphone (or an audio file "
                    "played through the same engine) and show each as soon as it is said.",
        epilog=LISTEN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", metavar="INDEX|NAME",
                   help="input device: index or (part of) its name from `speechrnn "
                        "devices` (default: the system's default input)")
    add_decoder_options(p, "confidence (0-1) below which speech is rejected (default: "
                           f"{DEFAULT_THRESHOLD})")
    p.add_argument("--jsonl", action="store_true",
                   help="print one JSON object per event on stdout, and nothing else")
    p.add_argument("--input", type=Path, metavar="FILE",
                   help="listen to an audio file instead of a microphone; - reads a "
                        "recording piped in as it arrives (arecord -f S16_LE -r 16000 -t wav "
                        "| speechrnn listen --input -)")
    p.add_argument("--realtime", action="store_true",
                   help="with --input: play the file at its real pace, like a microphone "
                        "(default: as fast as possible)")
    p.add_argument("--model", type=Path, metavar="FILE",
                   help="ONNX model (default: the model bundled with speechrnn; "
                   "`speechrnn --version` says where it is)")
    p.set_defaults(func=run_listen)


def _error(message: str) -> None:
    print(f"speechrnn: {message}", file=sys.stderr, flush=True)


# -- devices --------------------------------------------------------------------------


def run_devices(args: argparse.Namespace) -> int:
    from speechrnn.mic import MicError, list_devices

    try:
        devices = list_devices()
    except MicError as e:
        _error(str(e))
        return e.exit_code
    if not devices:
        _error("no audio input device found; connect a microphone, or check that the "
               "audio system (ALSA, PulseAudio) is running")
        return EXIT_USAGE
    if args.jsonl:
        for d in devices:
            print(json.dumps({"index": d.index, "name": d.name, "sample_rate": d.sample_rate,
                              "channels": d.channels, "hostapi": d.hostapi,
                              "default": d.is_default}, ensure_ascii=False))
        return EXIT_OK
    width = max(4, *(len(d.name) for d in devices))
    print(f"  {'index':>5}  {'name':<{width}}  {'rate':>6}  {'channels':>8}  host API")
    for d in devices:
        mark = "*" if d.is_default else " "
        print(f"{mark} {d.index:>5}  {d.name:<{width}}  {d.sample_rate:>6}  "
              f"{d.channels:>8}  {d.hostapi}")
    print("* default input device")
    return EXIT_OK


# -- listen ---------------------------------------------------------------------------


class Display:
    """Events on stdout (readable lines or JSON lines); level meter and partial text on a
    status line on stderr, only when stderr is a terminal."""

    def __init__(self, jsonl: bool, out: TextIO | None = None, err: TextIO | None = None):
        self.jsonl = jsonl
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.live = self.err.isatty()
        self.level_db = -math.inf
        self.partial = ""
        self._drawn = False
        self._last_draw = 0.0

    def block(self, block: np.ndarray) -> None:
        power = float(np.mean(np.square(block, dtype=np.float64))) if len(block) else 0.0
        self.level_db = 10 * math.log10(power) if power > 1e-12 else -math.inf
        if self.live and time.monotonic() - self._last_draw >= STATUS_EVERY:
            self._draw()

    def event(self, event) -> None:
        if self.jsonl:
            self._clear()
            self.out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
            self.out.flush()
            if event.type == "partial":
                self.partial = event.text
            return
        if event.type == "partial":
            self.partial = event.text
            if self.live:
                self._draw()
            return
        self.partial = ""
        self._clear()
        line = event.text if event.type == "command" else f"(rejected: {event.text or '?'})"
        self.out.write(f"{event.start:7.2f}-{event.end:.2f} s  {line:<28}  confidence "
                       f"{event.confidence:.2f}  latency {event.latency * 1000:.0f} ms\n")
        self.out.flush()

    def _draw(self) -> None:
        self._last_draw = time.monotonic()
        level = max(0.0, min(1.0, (self.level_db + METER_DB) / METER_DB))
        bars = int(round(level * 10))
        db = max(self.level_db, -99.0)
        heard = f'  heard: "{self.partial[-40:]}"' if self.partial else ""
        self.err.write(f"\r\x1b[K[{'#' * bars}{'.' * (10 - bars)}] {db:3.0f} dB{heard}")
        self.err.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._drawn = False

    def message(self, text: str) -> None:
        self._clear()
        print(text, file=self.err, flush=True)


def _metered(blocks: Iterable, display: Display) -> Iterator:
    for item in blocks:
        display.block(item[0] if isinstance(item, tuple) else item)
        yield item


@dataclass
class _State:
    engine: Any = None
    mic: Any = None
    counts: dict[str, int] = field(default_factory=lambda: {"command": 0, "rejected": 0})


def run_listen(args: argparse.Namespace) -> int:
    display = Display(args.jsonl)
    state = _State()
    # Ctrl-C is how listening ends, even when started from a shell that made background
    # jobs ignore SIGINT (then Python would never raise KeyboardInterrupt).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        status = _listen(args, display, state)
    except KeyboardInterrupt:
        status = EXIT_OK
    if status != EXIT_USAGE:
        seconds = state.engine.position if state.engine is not None else 0.0
        overflows = state.mic.overflows if state.mic is not None else 0
        display.message(f"stopped after {seconds:.1f} s: {state.counts['command']} "
                        f"command(s), {state.counts['rejected']} rejected, {overflows} "
                        "overflow(s)")
    return status


def _listen(args: argparse.Namespace, display: Display, state: _State) -> int:
    from speechrnn.audio import STDIN, AudioError, audio_info
    from speechrnn.commands import CommandsError
    from speechrnn.mic import MicError, Microphone
    from speechrnn.recognizer import Recognizer
    from speechrnn.session import ModelError
    from speechrnn.stream import StreamEngine, file_blocks

    if args.realtime and args.input is None:
        _error("--realtime only applies to --input FILE")
        return EXIT_USAGE
    try:
        recognizer = Recognizer(args.model, args.commands, args.threshold, free=args.free)
        piped = args.input is not None and str(args.input) == STDIN
        info = audio_info(args.input) if args.input is not None and not piped else None
    except (ModelError, CommandsError, AudioError, ValueError) as e:
        _error(str(e))
        return EXIT_USAGE
    state.engine = engine = StreamEngine(recognizer)
    try:
        if args.input is not None:
            source = nullcontext(file_blocks(args.input, realtime=args.realtime))
        else:
            source = state.mic = Microphone(args.device)
        with source as blocks:
            if piped:
                where = "standard input"
            elif info is not None:
                where = f"{args.input} ({info.duration:.1f} s)"
            else:
                d = state.mic.device
                where = f"input device {d.index} {d.name!r} at {d.sample_rate} Hz; Ctrl-C to stop"
            display.message(f"listening to {where}")
            for event in engine.run(_metered(blocks, display)):
                if event.type in state.counts:
                    state.counts[event.type] += 1
                display.event(event)
    except (MicError, AudioError) as e:
        return report_source_error(display, e)
    return EXIT_OK


def report_source_error(display: Display, error: Exception) -> int:
    """Say why the microphone or input file failed mid-stream; its exit status (a
    MicError carries its own, a damaged file is 1)."""
    display.message(f"speechrnn: {error}")
    return getattr(error, "exit_code", EXIT_FAILED)
