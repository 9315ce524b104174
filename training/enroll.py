"""Adapt the shipped model to your own voice: a short third stage on your recordings.

    python -m training.enroll my_voice/ --out runs/enroll [--minutes 12]

RECORDINGS is a folder with a folder for each command, holding your recordings of it
(`my_voice/turn_on_the_light/*.wav`; the folder's name, underscores as spaces, is the
command; a folder `_no_command` may hold recordings of silence or other words), or a
JSONL manifest (`path`, `text`). Say every command you will use: recordings of only some
commands teach the model those words, and it then hears your other commands as them.

Training continues the model for --minutes on the synthetic corpus and the real
recordings of the recipe (so it keeps what it knew) with your recordings mixed in,
about 2,000 of them (repeated) an epoch. Writes OUT/enrolled.pt, OUT/speechrnn.onnx and
OUT/speechrnn.int8.onnx (with the verifier, and your commands as the model's own list):

    speechrnn transcribe --model OUT/speechrnn.int8.onnx recording.wav

Needs the `train` extra and the synthetic corpus (`python -m training.synth`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

from speechrnn.audio import AUDIO_EXTENSIONS
from speechrnn.text import normalize_text
from training.datasets import Utterance, read_manifest, write_manifest
from training.train import CONFIG_DIR, ConfigError, TrainConfig, load_config, train

NO_COMMAND = "_no_command"
CLIPS_PER_EPOCH = 2000  # your recordings, repeated, among about 44,000 clips an epoch
SOURCE = "enrollment"


def read_recordings(path: str | Path) -> list[Utterance]:
    """A folder of command folders, or a JSONL manifest -> utterances (one speaker)."""
    path = Path(path)
    if path.is_file():
        utts = [replace(u, speaker="you", source=SOURCE) for u in read_manifest(path)]
    elif path.is_dir():
        utts = []
        for folder in sorted(p for p in path.iterdir() if p.is_dir()):
            text = "" if folder.name == NO_COMMAND else normalize_text(
                folder.name.replace("_", " "))
            utts += [Utterance(str(f.resolve()), text, "you", SOURCE)
                     for f in sorted(folder.iterdir())
                     if f.suffix.lower() in AUDIO_EXTENSIONS]
    else:
        raise ConfigError(f"recordings {path} do not exist")
    if not any(u.text for u in utts):
        raise ConfigError(f"{path} holds no recording of a command: give a folder with a "
                          "folder of recordings for each command (turn_on_the_light/*.wav) "
                          "or a JSONL manifest with 'path' and 'text'")
    return utts


def commands_of(utts: list[Utterance]) -> list[str]:
    return sorted({u.text for u in utts if u.text})


def enrollment_config(base: TrainConfig, manifest: Path, clips: int, out: Path,
                      minutes: float, init_checkpoint: str) -> TrainConfig:
    """`base` (a third stage's settings) continued from `init_checkpoint` for `minutes`,
    with the recordings of `manifest` repeated to about CLIPS_PER_EPOCH an epoch."""
    repeat = max(1, math.ceil(CLIPS_PER_EPOCH / clips))
    real = [*base.data.real, {"manifest": str(manifest), "repeat": repeat}]
    return replace(base, run_dir=str(out / "run"), output=str(out / "enrolled.pt"),
                   init_checkpoint=init_checkpoint, max_minutes=minutes,
                   data=replace(base.data, real=real))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.enroll", description=__doc__.split(
        "\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recordings", help="a folder with a folder of recordings for each "
                   "command, or a JSONL manifest (path, text)")
    p.add_argument("--out", type=Path, default=Path("runs/enroll"),
                   help="folder for the checkpoint and the two ONNX models "
                   "(default: runs/enroll)")
    p.add_argument("--minutes", type=float, default=12.0,
                   help="training time (default 12; it resumes if stopped)")
    p.add_argument("--checkpoint", default="training/checkpoints/default.pt",
                   help="the model to adapt (default: the shipped model's checkpoint)")
    p.add_argument("--config", type=Path, default=CONFIG_DIR / "finetune_again.json",
                   help="a third stage's settings: data, augmentation, learning rate "
                   "(default: training/configs/finetune_again.json)")
    p.add_argument("--fresh", action="store_true",
                   help="start over rather than resume OUT's unfinished run (give new "
                   "recordings a new --out, or this)")
    p.add_argument("--no-verifier", action="store_true",
                   help="skip fitting the verifier (30 s); the confidence is then the "
                   "model's own posterior")
    args = p.parse_args(argv)
    try:
        utts = read_recordings(args.recordings)
        commands = commands_of(utts)
        args.out.mkdir(parents=True, exist_ok=True)
        manifest = args.out / "recordings.jsonl"
        write_manifest(utts, manifest)
        (args.out / "commands.txt").write_text("\n".join(commands) + "\n")
        print(f"{len(utts)} recordings, {len(commands)} commands: {', '.join(commands)}")
        for command in commands:
            n = sum(u.text == command for u in utts)
            if n < 5:
                print(f"warning: only {n} recording(s) of {command!r}; ten or more adapt "
                      "the model better", file=sys.stderr)
        cfg = enrollment_config(load_config(args.config), manifest, len(utts), args.out,
                                args.minutes, args.checkpoint)
        checkpoint = train(cfg, resume=not args.fresh)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return export_models(checkpoint, args.out, args.no_verifier)


def export_models(checkpoint: Path, out: Path, no_verifier: bool) -> int:
    """OUT/speechrnn.onnx and OUT/speechrnn.int8.onnx with the verifier and the enrolled
    commands as their own list."""
    from export.__main__ import main as export
    from export.onnx_export import read_metadata, write_metadata
    from training.fit_verifier import main as fit_verifier

    fp32, int8 = out / "speechrnn.onnx", out / "speechrnn.int8.onnx"
    for model, extra in ((fp32, []), (int8, ["--int8"])):
        status = export([str(checkpoint), "-o", str(model), *extra])
        if status:
            return status
    # The verifier is fitted against the 35 default commands, whose clips training's
    # corpus holds (the shipped model's verifier serves any list the same way); only
    # then do the files get your commands as their own list.
    if not no_verifier:
        status = fit_verifier([str(int8), "--also", str(fp32)])
        if status:
            return status
    commands = (out / "commands.txt").read_text().split("\n")
    for model in (fp32, int8):
        metadata = read_metadata(model)
        metadata["default_commands"] = json.dumps([c for c in commands if c])
        write_metadata(model, metadata)
    print(f"\nspeechrnn transcribe --model {int8} RECORDING.wav")
    return 0


if __name__ == "__main__":
    sys.exit(main())
