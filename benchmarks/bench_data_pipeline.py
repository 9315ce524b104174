"""Benchmark: the training data worker's cost per clip (load, augment, front end).

    python benchmarks/bench_data_pipeline.py [--config C ...] [--batches 150]

Not part of `python -m benchmarks`: it needs the training corpus (`python -m
training.synth`). On a 2-core CPU one data worker feeds one torch thread, and a step
waits for whichever is slower, so the worker's milliseconds per clip bound the clips a
second a stage trains. This runs the worker's own code (`SpeechDataset` with the
config's augmentation, then `CollateWithFeatures`, through training's `make_loader`)
on one thread in this process over
the same batches each time (fixed seeds), and writes benchmarks/results/data_pipeline.md.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine, write_results  # noqa: E402
from training.augment import AugmentConfig, Augmenter  # noqa: E402
from training.datasets import durations  # noqa: E402
from training.train import (  # noqa: E402
    CollateWithFeatures,
    build_corpus,
    build_model_config,
    load_config,
    make_loader,
)

RESULTS = ROOT / "benchmarks" / "results"
WARM_UP = 5  # batches run before the timing starts
CONFIGS = ("training/configs/default.json", "training/configs/finetune_silence.json")


def worker_ms_per_clip(config: str, batches: int) -> tuple[float, int]:
    """(milliseconds of worker time per clip, clips timed) for `batches` batches."""
    cfg = load_config(ROOT / config, {"workers": 0})  # training's own loader, in this process
    utts = durations(build_corpus(cfg.data, cfg.seed).train)
    augmenter = Augmenter(AugmentConfig(**cfg.augment), seed=cfg.seed)
    collate = CollateWithFeatures(build_model_config(cfg).features)  # the config's front end
    loader = make_loader(utts, cfg, augmenter, epoch_seed=0, train=True, collate_fn=collate)
    if len(loader) <= WARM_UP:
        raise SystemExit(f"{config}: too few training clips to time ({len(utts)})")
    batches_left = iter(loader)
    for _ in range(WARM_UP):  # imports, FFT plans, noise files in the page cache
        next(batches_left)
    clips, start = 0, time.perf_counter()
    for batch in itertools.islice(batches_left, batches):
        if batch is not None:
            clips += len(batch["index"]) + batch["dropped"]
    return (time.perf_counter() - start) / clips * 1000, clips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append",
                        help=f"training config(s) to time (default: {', '.join(CONFIGS)})")
    parser.add_argument("--batches", type=int, default=150, help="batches timed per config")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for config in args.config or CONFIGS:
        np.random.seed(0)
        ms, clips = worker_ms_per_clip(config, args.batches)
        print(f"{config}: {ms:.2f} ms a clip ({clips} clips)")
        rows.append(f"| `{config}` | {clips} | {ms:.2f} | {1000 / ms:.0f} |")
    write_results(RESULTS / "data_pipeline.md", [
        "# Training data worker: cost per clip",
        "",
        f"{machine()}. `python benchmarks/bench_data_pipeline.py --batches {args.batches}`: "
        "one thread, the worker's own code (load, augment, front end) over the same batches "
        "of each config's training clips. One data worker feeds at most the last column.",
        "",
        "| config | clips | worker ms a clip | clips a second, one worker |",
        "|---|---|---|---|",
        *rows,
    ])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
