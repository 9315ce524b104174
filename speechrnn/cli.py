"""The `speechrnn` command: `transcribe` here; `listen` and `devices` come from
speechrnn.cli_listen, and `record` from speechrnn.cli_record (which uses its display),
when they are installed.

Subcommand modules provide `add_parsers(subparsers)`; each parser they add sets
`func=handler` with `handler(args) -> exit status`.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from speechrnn.audio import AUDIO_EXTENSIONS, STDIN

# Kept in step with speechrnn.recognizer.DEFAULT_THRESHOLD (a test checks); not imported
# from there so `--help` stays instant.
DEFAULT_THRESHOLD = 0.75
PROGRESS_MIN_FILES = 20

EXIT_OK, EXIT_FILE_FAILED, EXIT_USAGE = 0, 1, 2

TRANSCRIBE_EPILOG = f"""\
output formats:
  text   one line per file: PATH<TAB>TEXT (TEXT is empty when nothing was recognized)
  jsonl  one JSON object per file, in input order:
         {{"path": str, "text": str, "segments": [{{"text": str, "start": float,
          "end": float, "confidence": float}}], "error": null or "<one sentence>"}}
  csv    header path,start,end,text,confidence,error; one row per segment, and one row
         with empty start/end/text for a file without any

Files up to 10 seconds are decoded whole; longer ones are read in blocks and split by
voice activity, so a file of hours needs little memory. Any sample rate from 4 to
768 kHz, channel count and sample format that libsndfile reads is converted to 16 kHz
mono.

Every command's CTC likelihood is compared with the others and with "none of these"
(the best free transcriptions that are not commands), and where the model carries a
verifier it turns that into the confidence; a segment whose best command has
a confidence below --threshold (default {DEFAULT_THRESHOLD}, chosen from false alarms
against misses on held-out voices) is rejected, so other words and noise give no
command.

exit status: 0 every file was read, 1 some file could not be read (the others are still
transcribed, and each failure is reported on stderr), 2 usage error or a model or
commands file that cannot be used.

examples:
  speechrnn transcribe samples/
  speechrnn transcribe --commands samples/commands.txt --format jsonl samples/*.wav
  speechrnn transcribe --free recording.flac
  speechrnn transcribe --jobs 4 --format csv --output results.csv recordings/
  sox talk.mp3 -t wav - | speechrnn transcribe -
"""


def threshold_value(text: str) -> float:
    """argparse type of --threshold: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def add_decoder_options(p: argparse.ArgumentParser, threshold_help: str) -> None:
    """--commands / --free and --threshold, the same for transcribe and listen."""
    words = p.add_mutually_exclusive_group()
    words.add_argument("--commands", type=Path, metavar="FILE",
                       help="allowed commands, one a line (a word or a phrase); '#' starts a "
                            "comment; a threshold between slashes after a command is its own "
                            "('jarvis /0.05/') (default: the list stored in the model)")
    words.add_argument("--free", action="store_true",
                       help="transcribe freely, without a command list (CTC beam search)")
    p.add_argument("--threshold", type=threshold_value, metavar="X", help=threshold_help)


def positive_int(text: str) -> int:
    """argparse type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return value


def add_transcribe_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "transcribe", help="recognize commands in audio files",
        description="Recognize spoken commands in audio files (WAV, FLAC, OGG, Opus, MP3, "
                    "AIFF: whatever libsndfile reads) or folders of them, with times and "
                    "confidences.",
        epilog=TRANSCRIBE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="audio file, folder searched recursively for "
                        + ", ".join(AUDIO_EXTENSIONS) + f", or {STDIN} for a recording "
                        "piped to standard input")
    add_decoder_options(p, "confidence (0-1) below which a segment is rejected (default: "
                           f"{DEFAULT_THRESHOLD}; with --free, 0)")
    p.add_argument("--format", choices=("text", "jsonl", "csv"), default="text",
                   help="output format (default: text)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="write results to FILE (default: stdout)")
    p.add_argument("-j", "--jobs", type=positive_int, default=1, metavar="N",
                   help="files transcribed in parallel (default: 1)")
    p.add_argument("--model", type=Path, metavar="FILE",
                   help="ONNX model (default: the model bundled with speechrnn; "
                   "`speechrnn --version` says where it is)")
    p.set_defaults(func=run_transcribe)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechrnn",
        description="Offline speech-command recognition: transcribe files, or listen live.",
        formatter_class=argparse.RawDescriptionHelpFormatter)  # keeps --version's lines
    parser.add_argument("--version", action="version", version=_version_text(),
                        help="show the version and where the bundled model files are")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_transcribe_parser(subparsers)
    try:
        cli_listen = importlib.import_module("speechrnn.cli_listen")
    except ModuleNotFoundError as e:
        if e.name != "speechrnn.cli_listen":
            raise
    else:
        cli_listen.add_parsers(subparsers)
        importlib.import_module("speechrnn.cli_record").add_parsers(subparsers)
    return parser


def _version_text() -> str:
    from speechrnn.session import bundled_model_path

    return (f"speechrnn {_version()}\n"
            f"bundled model: {bundled_model_path()} (int8, what speechrnn runs)\n"
            f"its float form: {bundled_model_path(quantized=False)}")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("speechrnn")
    except PackageNotFoundError:
        return "(not installed)"


# -- inputs -------------------------------------------------------------------------


def expand_paths(paths: Iterable[str | Path]) -> Iterator[tuple[str, str | None]]:
    """(path, error) for every file to transcribe: folders are searched recursively and
    sorted; a folder without audio gives its own error."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
            if not found:
                yield str(path), (f"folder {path} holds no audio files "
                                  f"({', '.join(AUDIO_EXTENSIONS)})")
            for p in found:
                yield str(p), None
        else:
            yield str(raw), None


# -- outputs ------------------------------------------------------------------------


class Writer:
    """Writes transcripts in one of the output formats, one file at a time."""

    def __init__(self, out: TextIO, fmt: str):
        self.out = out
        self.fmt = fmt
        if fmt == "csv":
            self._csv = csv.writer(out, lineterminator="\n")
            self._csv.writerow(["path", "start", "end", "text", "confidence", "error"])

    def write(self, t) -> None:
        if self.fmt == "jsonl":
            self.out.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")
        elif self.fmt == "csv":
            rows = [[t.path, s.start, s.end, s.text, s.confidence, ""] for s in t.segments]
            self._csv.writerows(rows or [[t.path, "", "", "", "", t.error or ""]])
        else:
            self.out.write(f"{t.path}\t{t.text}\n")
        self.out.flush()


# -- running --------------------------------------------------------------------------


def _error(message: str) -> None:
    print(f"speechrnn: {message}", file=sys.stderr, flush=True)


_worker = None


def _init_worker(options: dict) -> None:
    global _worker
    from speechrnn.recognizer import Recognizer

    _worker = Recognizer(**options)


def _work(path: str):
    return _worker.transcribe(path)


def _read_stdin() -> tuple[str | None, str | None]:
    """(a temporary file holding standard input, or None and why not). Kept on disk, so
    that a long recording is read in blocks like any file; the format is told from the
    content, as for files."""
    if sys.stdin is None or sys.stdin.isatty():
        return None, (f"{STDIN} reads a recording from standard input, but that is a "
                      f"terminal; pipe one in (sox in.mp3 -t wav - | speechrnn transcribe -)")
    with tempfile.NamedTemporaryFile(prefix="speechrnn-stdin-", delete=False) as f:
        shutil.copyfileobj(sys.stdin.buffer, f)
    return f.name, None


def _transcripts(recognizer, options: dict, items: list[tuple[str, str | None]],
                 jobs: int, stdin_file: str | None = None) -> Iterator:
    """Transcripts of every item, in order; items that already failed pass through.
    STDIN is read from `stdin_file` and named "standard input" in errors."""
    from speechrnn.recognizer import Transcript

    paths = [stdin_file if p == STDIN else p for p, err in items if err is None]
    if jobs > 1 and len(paths) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: onnxruntime's threads do not survive a fork safely.
        pool = ProcessPoolExecutor(min(jobs, len(paths)), multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(options,))
        chunk = max(1, min(16, len(paths) // (4 * jobs)))
        results = pool.map(_work, paths, chunksize=chunk)
    else:
        pool = None
        results = recognizer.transcribe_many(paths)
    try:
        for path, err in items:
            if err is not None:
                yield Transcript(path=path, error=err)
                continue
            transcript = next(results)
            if path == STDIN:
                transcript.path = STDIN
                if transcript.error:
                    transcript.error = transcript.error.replace(stdin_file, "standard input")
            yield transcript
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def run_transcribe(args: argparse.Namespace) -> int:
    from speechrnn.commands import CommandsError
    from speechrnn.recognizer import Recognizer
    from speechrnn.session import ModelError

    options = {"model": args.model, "commands": args.commands, "threshold": args.threshold,
               "free": args.free}
    try:
        recognizer = Recognizer(**options)
    except (ModelError, CommandsError) as e:
        _error(str(e))
        return EXIT_USAGE
    # Parsed once, not per worker; each command's own threshold goes with it.
    options["commands"] = [f"{c} /{recognizer.thresholds[c]!r}/" if c in recognizer.thresholds
                           else c for c in recognizer.commands] or None
    stdin_file, stdin_error = _read_stdin() if STDIN in args.paths else (None, None)
    try:
        return _transcribe_items(args, recognizer, options, stdin_file, stdin_error)
    finally:
        if stdin_file is not None:
            os.unlink(stdin_file)


def _transcribe_items(args: argparse.Namespace, recognizer, options: dict,
                      stdin_file: str | None, stdin_error: str | None) -> int:
    items = [(p, stdin_error if p == STDIN else err) for p, err in expand_paths(args.paths)]
    try:
        out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    except OSError as e:
        _error(f"cannot write {args.output} ({e.strerror or e}); check the path")
        return EXIT_USAGE
    from tqdm import tqdm

    progress = tqdm(total=len(items), unit="file", file=sys.stderr, leave=False,
                    disable=not (sys.stderr.isatty() and len(items) >= PROGRESS_MIN_FILES))
    failed = 0
    try:
        writer = Writer(out, args.format)
        for transcript in _transcripts(recognizer, options, items, args.jobs, stdin_file):
            if transcript.error:
                failed += 1
                progress.clear()
                _error(transcript.error)
            writer.write(transcript)
            progress.update()
    finally:
        progress.close()
        if out is not sys.stdout:
            out.close()
    if failed:
        _error(f"{failed} of {len(items)} input(s) could not be transcribed")
    return EXIT_FILE_FAILED if failed else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's final flush
        # of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FILE_FAILED


if __name__ == "__main__":
    sys.exit(main())
