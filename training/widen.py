"""Widen a checkpoint's LSTMs (more units each way) for fine-tuning, keeping what it does.

    python -m training.widen training/checkpoints/default.pt --hidden 224 -o wide_init.pt

Every old weight is kept. The new units get small random weights of their own, but
every weight that carries their output onwards (into the old units' recurrences, the
next layer and the output layer) starts at zero, so the widened model's output is
exactly the old model's until training grows them. That asks whether a bigger network
helps without paying for training one from scratch. The new checkpoint records its
source, so the training time behind a model tuned from it still adds up.
"""

from __future__ import annotations

import argparse
import sys

import torch

from training.checkpoint import CheckpointError, load_checkpoint, save_derived
from training.model import CTCModel, ModelConfig

NEW_UNIT_SCALE = 0.1  # of PyTorch's own init range for the new units' incoming weights


def _embed(old: torch.Tensor, new: torch.Tensor, rows, cols=None) -> None:
    """Copy `old` into `new` at row (and column) indices; the rest of `new` stays."""
    if cols is None:
        new[rows] = old
    else:
        new[torch.as_tensor(rows)[:, None], torch.as_tensor(cols)[None, :]] = old


def _gate_rows(old_h: int, new_h: int) -> list[int]:
    """Rows of the old units in a [4 * hidden] gate stack (i, f, g, o) of the new width."""
    return [g * new_h + j for g in range(4) for j in range(old_h)]


def _direction_cols(old_h: int, new_h: int) -> list[int]:
    """Columns of the old units in a [forward, backward] output of the new width."""
    return list(range(old_h)) + [new_h + j for j in range(old_h)]


@torch.no_grad()
def widen(state: dict, hidden: int, seed: int = 0) -> CTCModel:
    """The model of checkpoint `state` with `hidden` units each way in every LSTM."""
    config = ModelConfig.from_dict(state["model_config"])
    old_h = config.hidden
    if hidden < old_h:
        raise ValueError(f"--hidden {hidden} is narrower than the checkpoint's {old_h}")
    old = CTCModel(config)
    old.load_state_dict(state["model_state"])
    torch.manual_seed(seed)
    model = CTCModel(ModelConfig.from_dict({**config.to_dict(), "hidden": hidden}))
    rows = _gate_rows(old_h, hidden)
    units = list(range(old_h))
    pairs = _direction_cols(old_h, hidden)
    for i, (old_layer, new_layer) in enumerate(zip(old.layers, model.layers, strict=True)):
        in_cols = None if i == 0 else pairs
        for name in ("forward_lstm", "backward_lstm"):
            o, n = getattr(old_layer, name), getattr(new_layer, name)
            for p in (n.weight_ih_l0, n.weight_hh_l0, n.bias_ih_l0, n.bias_hh_l0):
                p.mul_(NEW_UNIT_SCALE)
            # The old units ignore the new ones, in this layer and the one before.
            n.weight_hh_l0[rows, old_h:] = 0
            if in_cols is not None:
                new_cols = [c for c in range(2 * hidden) if c not in in_cols]
                _embed(torch.zeros(len(rows), len(new_cols)), n.weight_ih_l0, rows, new_cols)
            _embed(o.weight_ih_l0, n.weight_ih_l0, rows,
                   in_cols if in_cols is not None else list(range(o.weight_ih_l0.shape[1])))
            _embed(o.weight_hh_l0, n.weight_hh_l0, rows, units)
            _embed(o.bias_ih_l0, n.bias_ih_l0, rows)
            _embed(o.bias_hh_l0, n.bias_hh_l0, rows)
    model.output.weight.zero_()
    _embed(old.output.weight, model.output.weight, list(range(len(config.tokens))), pairs)
    model.output.bias.copy_(old.output.bias)
    model.stack.load_state_dict(old.stack.state_dict())
    model.mfcc.load_state_dict(old.mfcc.state_dict())
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="checkpoint to start from")
    p.add_argument("--hidden", type=int, required=True,
                   help="LSTM units each way in the new checkpoint (at least the old number)")
    p.add_argument("-o", "--output", required=True, help="where to write the new checkpoint")
    p.add_argument("--seed", type=int, default=0, help="seed of the new units' weights")
    args = p.parse_args(argv)
    try:
        state = load_checkpoint(args.checkpoint)
        model = widen(state, args.hidden, args.seed)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    save_derived(args.output, model, args.checkpoint, state)
    print(f"wrote {args.output}: {state['model_config']['hidden']} -> {args.hidden} LSTM units "
          f"each way, {model.num_parameters():,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
