"""The `speechrnn record` subcommand: record takes of each command for enrolment, cut
from the microphone (or a long recording) by voice activity, one WAV a take, in the folder
layout `python -m training.enroll` reads.
"""

from __future__ import annotations

import argparse
import re
import signal
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from speechrnn.audio import SAMPLE_RATE
from speechrnn.cli import positive_int
from speechrnn.cli_listen import EXIT_OK, EXIT_USAGE, Display, report_source_error

DEFAULT_TAKES = 10  # what bench_enroll measured
# A take is kept only if it sounds like one command said clearly.
MAX_TAKE_SECONDS = 4.0
MIN_PEAK_DB = -35.0  # quieter than this, the microphone is too far or its gain too low
CLIP_LEVEL = 0.99  # the microphone rebuilds clipped peaks above full scale (declip)
# Longer hangover than listening's: a phrase's pauses must not split the take.
RECORD_VAD = {"hangover": 0.6, "pre_roll": 0.25, "post_roll": 0.25}
TAKE_NAME = re.compile(r"^(\d+)\.wav$")

RECORD_EPILOG = """\
Each command gets a folder named after it, spaces as underscores
(OUT/turn_on_the_light/01.wav, 02.wav, ...). Say the command when prompted, then pause:
a take ends after 0.6 s of silence. A take longer than 4 s, too quiet or clipped is not
kept, and the prompt asks again. Stop with Ctrl-C whenever you like: the takes saved so
far stay, and running the same command again goes on where it stopped (commands that
already have --takes recordings are skipped).

With --input, a recording in which each command is said --takes times, in the order
of the list, with a pause after each, is cut into takes the same way.

exit status: 0 done or stopped by Ctrl-C, 1 the device was lost or the input file is
damaged, 2 no usable device, commands or input file.

then adapt the model to your voice (needs the `train` extra, about 12 minutes):
  python -m training.enroll OUT --out runs/enroll
  speechrnn listen --model runs/enroll/speechrnn.int8.onnx

examples:
  speechrnn record --commands commands.txt --out my_voice
  speechrnn record "turn on the light" "turn off the light" stop --takes 5
  speechrnn record --commands commands.txt --input all_my_takes.wav
"""


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "record", help="record your commands for enrolment (training.enroll)",
        description="Record takes of each command from a microphone, for adapting the "
                    "model to your voice with `python -m training.enroll`.",
        epilog=RECORD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("commands", nargs="*", metavar="COMMAND",
                   help="the commands to record (or --commands FILE)")
    p.add_argument("--commands", dest="commands_file", type=Path, metavar="FILE",
                   help="the commands, one a line, as for transcribe and listen")
    p.add_argument("--out", type=Path, default=Path("my_voice"), metavar="DIR",
                   help="the folder for the recordings (default: my_voice)")
    p.add_argument("--takes", type=positive_int, default=DEFAULT_TAKES, metavar="N",
                   help=f"recordings of each command (default: {DEFAULT_TAKES})")
    p.add_argument("--device", metavar="INDEX|NAME",
                   help="input device: index or (part of) its name from `speechrnn "
                        "devices` (default: the system's default input)")
    p.add_argument("--input", type=Path, metavar="FILE",
                   help="cut the takes from an audio file instead of a microphone")
    p.set_defaults(func=run_record)


def folder_name(command: str) -> str:
    """The folder of a command's takes: training.enroll reads underscores as spaces."""
    return command.replace(" ", "_")


def saved_takes(folder: Path) -> list[int]:
    """Numbers of the takes already in a command's folder."""
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for f in folder.iterdir() if (m := TAKE_NAME.match(f.name)))


def take_problem(audio: np.ndarray, speech_seconds: float) -> str | None:
    """Why a take is not kept, in words for the speaker; None if it is fine."""
    if speech_seconds > MAX_TAKE_SECONDS:
        return (f"that was {speech_seconds:.1f} s of speech, too long for one command; say "
                "just the command, then pause")
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak >= CLIP_LEVEL:
        return "that was clipped (too loud): speak a little further from the microphone " \
               "or turn its input level down"
    if peak < 10 ** (MIN_PEAK_DB / 20):
        return "that was very quiet: speak closer to the microphone or turn its input " \
               "level up"
    return None


@dataclass
class Plan:
    """The takes still to record: for each command, its folder and the numbers to write."""

    command: str
    folder: Path
    numbers: list[int]


def plan_takes(commands: list[str], out: Path, takes: int) -> list[Plan]:
    """What is left to record, continuing the numbering of takes already saved."""
    plans = []
    for command in commands:
        folder = out / folder_name(command)
        have = saved_takes(folder)
        start = max(have, default=0) + 1
        plans.append(Plan(command, folder, list(range(start, start + takes - len(have)))))
    return plans


@dataclass
class _Progress:
    saved: int = 0  # takes written this run


def run_record(args: argparse.Namespace) -> int:
    display = Display(jsonl=False)
    # Ctrl-C is how a session ends early, even when started from a shell that made
    # background jobs ignore SIGINT.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    progress = _Progress()
    try:
        return _record(args, display, progress)
    except KeyboardInterrupt:
        display.message(f"stopped: {progress.saved} take(s) saved in {args.out}; run the "
                        "same command again to go on")
        return EXIT_OK


def _load_commands(args: argparse.Namespace) -> list[str]:
    from speechrnn.commands import CommandsError, load_commands, normalize_commands

    if args.commands and args.commands_file:
        raise CommandsError("give the commands either as arguments or with --commands, not "
                            "both")
    if args.commands_file:
        return load_commands(args.commands_file)
    if not args.commands:
        raise CommandsError("give the commands to record, as arguments or with --commands "
                            "FILE")
    return normalize_commands(args.commands)


def _record(args: argparse.Namespace, display: Display, progress: _Progress) -> int:
    from speechrnn.audio import AudioError, audio_info
    from speechrnn.commands import CommandsError
    from speechrnn.mic import MicError, Microphone
    from speechrnn.stream import file_blocks
    from speechrnn.vad import Segmenter

    try:
        commands = _load_commands(args)
        if args.input is not None:
            audio_info(args.input)
    except (CommandsError, AudioError) as e:
        display.message(f"speechrnn: {e}")
        return EXIT_USAGE
    todo = [(plan, number) for plan in plan_takes(commands, args.out, args.takes)
            for number in plan.numbers]
    if not todo:
        display.message(f"{args.out} already holds {args.takes} take(s) of every command; "
                        "give a larger --takes to record more")
        return EXIT_OK
    mic = None
    try:
        if args.input is not None:
            source = nullcontext(file_blocks(args.input))
        else:
            source = mic = Microphone(args.device)
        with source as blocks:
            if mic is not None:
                d = mic.device
                display.message(f"recording from input device {d.index} {d.name!r}; say each "
                                "command when asked, then pause. Ctrl-C stops.")
            segmenter = Segmenter(**RECORD_VAD)
            _prompt(display, todo[0], args.takes)
            for block, _ in blocks:
                display.block(block)
                for segment in segmenter.push(block):
                    progress.saved += _take(segment, todo, display)
                    if not todo:
                        break
                    _prompt(display, todo[0], args.takes)
                if not todo:
                    break
            else:
                for segment in segmenter.flush():
                    if todo:
                        progress.saved += _take(segment, todo, display)
    except (MicError, AudioError) as e:
        return report_source_error(display, e)
    if todo:
        display.message(f"the input ended with {len(todo)} take(s) still to record; "
                        f"{progress.saved} saved in {args.out}")
        return EXIT_OK
    display.message(f"done: {progress.saved} take(s) saved in {args.out}. Adapt the model to them "
                    f"with\n  python -m training.enroll {args.out} --out runs/enroll")
    return EXIT_OK


def _prompt(display, item: tuple[Plan, int], takes: int) -> None:
    plan, number = item
    have = takes - len(plan.numbers) + plan.numbers.index(number) + 1
    display.message(f'say "{plan.command}"  ({have} of {takes})')


def _take(segment, todo: list[tuple[Plan, int]], display) -> bool:
    """Save a segment as the next take, or say why not; True if saved."""
    problem = take_problem(segment.audio, segment.duration)
    if problem:
        display.message(f"  not kept: {problem}")
        return False
    plan, number = todo.pop(0)
    plan.folder.mkdir(parents=True, exist_ok=True)
    path = plan.folder / f"{number:02d}.wav"
    part = path.with_name(path.name + ".part")  # a take cut short by Ctrl-C is no take
    sf.write(part, segment.audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    part.replace(path)
    print(f"{path}\t{plan.command}\t{segment.duration:.2f} s", flush=True)
    return True
