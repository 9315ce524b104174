"""Command line for the ONNX export: `python -m export CHECKPOINT -o model.onnx [--int8]`.

Exits 0 on success, 2 on a user error (bad checkpoint, command file or output path).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
The file holds the MFCC front end, the network and its metadata (tokens, sample rate,
frame rate, feature settings, model version, training data, default commands), so an
app needs nothing else. After writing, the file is checked with onnx.checker and run in
onnxruntime against torch on a clip length never used during export.

examples:
  python -m export training/checkpoints/default.pt -o speechrnn/models/speechrnn.onnx
  python -m export training/checkpoints/default.pt -o model-int8.onnx --int8
  python -m export ckpt.pt -o model.onnx --commands my_commands.txt --training-data "..."
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a speechrnn checkpoint to one self-contained ONNX model "
                    "(16 kHz waveform in, per-frame CTC log-probabilities out).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="training checkpoint (.pt)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="ONNX file to write (default: CHECKPOINT with .onnx, or .int8.onnx)")
    p.add_argument("--int8", action="store_true",
                   help="write a dynamically quantized int8 model (int8 LSTM weights; "
                        "the rest stays float)")
    p.add_argument("--commands", type=Path, metavar="FILE",
                   help="default command list stored in the file, one a line "
                        "(default: the 35 Speech Commands words)")
    p.add_argument("--training-data", metavar="TEXT",
                   help="short description of the training data (default: the "
                        "checkpoint's own, else 'not stated')")
    p.add_argument("--model-version", metavar="TEXT",
                   help="model version string (default: the checkpoint's own, else "
                        "CHECKPOINT-NAME-<hash of the file>)")
    p.add_argument("--description", metavar="TEXT", help="one-line model description")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, 17 or newer (default 18)")
    args = p.parse_args(argv)
    if args.opset < 17:
        p.error("--opset must be 17 or newer")
    if args.output is None:
        args.output = args.checkpoint.with_suffix(".int8.onnx" if args.int8 else ".onnx")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Imported after parsing so --help is instant and needs no torch.
    from export.onnx_export import (
        DESCRIPTION,
        CheckpointError,
        ExportError,
        export_checkpoint,
        read_commands,
    )

    try:
        commands = read_commands(args.commands) if args.commands else None
        result = export_checkpoint(
            args.checkpoint, args.output, int8=args.int8, commands=commands,
            training_data=args.training_data, model_version=args.model_version,
            description=args.description or DESCRIPTION, opset=args.opset)
    except (CheckpointError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size_mb = result.path.stat().st_size / 1e6
    kind = "int8" if args.int8 else "fp32"
    print(f"wrote {result.path} ({kind}, {size_mb:.2f} MB, model_version "
          f"{result.metadata['model_version']})")
    print(f"onnxruntime vs torch: max |diff| {result.max_abs_diff:.2g}, "
          f"argmax agreement {100 * result.argmax_agreement:.1f}% of frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
