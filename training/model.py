"""BiLSTM-CTC acoustic model over characters, front end included.

`forward(audio, audio_lengths)` is the exported graph: 16 kHz waveform in,
per-frame log-probabilities and their lengths out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from speechrnn.text import TOKENS
from training.features import (
    MFCC,
    FeatureConfig,
    model_input,
)


@dataclass(frozen=True)
class ModelConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    stack: int = 3  # feature frames per model frame (subsampling)
    proj_dim: int = 128
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.15
    tokens: tuple[str, ...] = TOKENS

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tokens"] = list(self.tokens)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["features"] = FeatureConfig(**d.get("features", {}))
        d["tokens"] = tuple(d.get("tokens", TOKENS))
        return cls(**d)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of [batch, time, dim] within its own length."""
    batch, time, dim = x.shape
    steps = torch.arange(time, device=x.device)[None, :]
    last = lengths[:, None] - 1
    index = torch.where(steps <= last, last - steps, steps)
    # Whole rows picked from [batch * time, dim]: forward and backward take half the time
    # of a gather along time, whose backward scatters element by element on the CPU.
    rows = index + torch.arange(batch, device=x.device)[:, None] * time
    return x.reshape(batch * time, dim).index_select(0, rows.reshape(-1)).view(x.shape)


def _onnx_gates(lstm: nn.LSTM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One direction's weights in ONNX LSTM layout: W, R and B = [Wb, Rb], gates i, o, f, c
    (torch orders them i, f, c, o)."""
    def reorder(w: torch.Tensor) -> torch.Tensor:
        i, f, c, o = w.chunk(4, dim=0)
        return torch.cat([i, o, f, c])

    return (reorder(lstm.weight_ih_l0), reorder(lstm.weight_hh_l0),
            torch.cat([reorder(lstm.bias_ih_l0), reorder(lstm.bias_hh_l0)]))


class _OnnxBiLSTM(torch.autograd.Function):
    """Exports a BiLSTMLayer as one ONNX LSTM node (bidirectional, `sequence_lens`).

    The node's reverse direction starts at each sequence's own last frame, as
    `reverse_padded` does, so every row's own frames come out the same (the node zeroes
    padded frames, which nothing reads) while the graph has a third of the nodes and runs
    faster. In torch it passes the layer's own output through.
    """

    @staticmethod
    def forward(ctx, x, lengths, weights, recurrent, bias, hidden, output):
        return output.clone()

    @staticmethod
    def symbolic(g, x, lengths, weights, recurrent, bias, hidden, output):
        steps_first = g.op("Transpose", x, perm_i=[1, 0, 2])
        lengths = g.op("Cast", lengths, to_i=6)  # int32, as the LSTM op wants
        y = g.op("LSTM", steps_first, weights, recurrent, bias, lengths,
                 direction_s="bidirectional", hidden_size_i=hidden, outputs=3)[0]
        # [steps, directions, batch, hidden] -> [batch, steps, directions * hidden]
        y = g.op("Transpose", y, perm_i=[2, 0, 1, 3])
        shape = g.op("Constant", value_t=torch.tensor([0, 0, -1], dtype=torch.int64))
        return g.op("Reshape", y, shape)


class BiLSTMLayer(nn.Module):
    """A bidirectional LSTM whose backward pass never reads padded frames."""

    def __init__(self, input_dim: int, hidden: int):
        super().__init__()
        self.forward_lstm = nn.LSTM(input_dim, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(input_dim, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        fwd, _ = self.forward_lstm(x)
        bwd, _ = self.backward_lstm(reverse_padded(x, lengths))
        out = torch.cat([fwd, reverse_padded(bwd, lengths)], dim=-1)
        if torch.onnx.is_in_onnx_export():
            gates = [_onnx_gates(self.forward_lstm), _onnx_gates(self.backward_lstm)]
            weights, recurrent, bias = (torch.stack(w) for w in zip(*gates, strict=True))
            out = _OnnxBiLSTM.apply(x, lengths, weights, recurrent, bias,
                                    self.forward_lstm.hidden_size, out)
        return out


class ByteDropout(nn.Module):
    """Dropout with `p` rounded to a multiple of 1/256, its mask cut from random bytes,
    four to each 32-bit draw: on the CPU, torch's own dropout draws one random number an
    element, a tenth of a training step here; this takes half of that."""

    def __init__(self, p: float):
        super().__init__()
        self.cut = round(p * 256)  # bytes below it drop their element

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.cut == 0:
            return x
        n = x.numel()
        draws = torch.randint(-2**31, 2**31 - 1, ((n + 3) // 4,), dtype=torch.int32,
                              device=x.device)
        keep = draws.view(torch.uint8)[:n].view(x.shape) >= self.cut
        return x * (keep.to(x.dtype) * (256 / (256 - self.cut)))


class CTCModel(nn.Module):
    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        self.mfcc = MFCC(config.features)
        n_in = config.features.n_mfcc
        # A strided conv over `stack` frames is frame stacking plus a linear projection.
        self.stack = nn.Conv1d(n_in, config.proj_dim, config.stack, stride=config.stack)
        self.layers = nn.ModuleList(
            BiLSTMLayer(config.proj_dim if i == 0 else 2 * config.hidden, config.hidden)
            for i in range(config.layers)
        )
        self.dropout = ByteDropout(config.dropout)
        self.output = nn.Linear(2 * config.hidden, len(config.tokens))

    def features(self, audio: torch.Tensor, audio_lengths: torch.Tensor,
                 mel_augment: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        """Normalized MFCC [batch, frames, n_mfcc] and frame lengths (`model_input`)."""
        return model_input(self.mfcc, audio, audio_lengths, mel_augment)

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor):
        """Features -> (log_probs [batch, frames, tokens], frame_lengths)."""
        k = self.config.stack
        x = nn.functional.pad(feats.transpose(1, 2), (0, k - 1))
        x = torch.relu(self.stack(x)).transpose(1, 2)
        lengths = (lengths + k - 1) // k
        for layer in self.layers:
            x = layer(self.dropout(x), lengths)
        logits = self.output(self.dropout(x))
        return torch.log_softmax(logits, dim=-1), lengths

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor):
        feats, lengths = self.features(audio, audio_lengths)
        return self.encode(feats, lengths)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
