"""Checkpoints: written atomically, holding everything needed to rebuild the model."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from training.model import CTCModel, ModelConfig

FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint that cannot be read; the message names the file."""


def save_checkpoint(path: str | Path, model: CTCModel, **extra) -> None:
    """Write model config, weights and any training state; never leaves a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format_version": FORMAT_VERSION, "model_config": model.config.to_dict(),
             "model_state": model.state_dict(), **extra}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many kinds for a damaged file
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}); "
                              "it may be truncated: delete it or resume from another") from e
    if not isinstance(state, dict) or "model_config" not in state or "model_state" not in state:
        raise CheckpointError(f"{path} is not a speechrnn checkpoint")
    return state


def history_from(source: str | Path, state: dict) -> dict:
    """The training history a checkpoint started from `source` (whose contents are `state`)
    carries, so that the model's whole training time and hardware can be told
    (benchmarks/bench_cost.py)."""
    prior = state.get("train_state") or {}
    return {"init_checkpoint": str(source),
            "init_elapsed": prior.get("elapsed", 0.0) + prior.get("init_elapsed", 0.0),
            "cpu_cores": list(prior.get("cpu_cores", [])),
            "gpus": list(prior.get("gpus", []))}


def save_derived(path: str | Path, model, source: str | Path, state: dict) -> None:
    """Save `model`, made from checkpoint `source` (contents `state`) without training
    (training.restack, training.widen): fine-tuning from it counts the source's time."""
    train_state = {"elapsed": 0.0, "epoch": 0, **history_from(source, state)}
    save_checkpoint(path, model, train_state=train_state,
                    training_data=state.get("training_data"))


def load_model(path: str | Path) -> CTCModel:
    """Rebuild the model of a checkpoint, in eval mode."""
    state = load_checkpoint(path)
    model = CTCModel(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model_state"])
    return model.eval()
