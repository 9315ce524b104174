"""An exponential moving average of a model's weights, for the weights a run ships."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class WeightAverage:
    """Keeps `decay * average + (1 - decay) * weights` after every step.

    The average starts from the model's weights when it is made (or from `state`, a
    previous average, when a run resumes). Tensors that are not floating point (counters)
    are copied, not averaged.
    """

    def __init__(self, model: torch.nn.Module, decay: float,
                 state: dict[str, torch.Tensor] | None = None):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be between 0 and 1, not {decay}")
        self.decay = decay
        source = state if state is not None else model.state_dict()
        self.state = {k: v.detach().clone() for k, v in source.items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for name, value in model.state_dict().items():
            average = self.state[name]
            if average.dtype.is_floating_point:
                average.lerp_(value, 1.0 - self.decay)
            else:
                average.copy_(value)

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """The model with the averaged weights inside the block, its own weights after."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            yield model
        finally:
            model.load_state_dict(own)
