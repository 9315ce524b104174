"""A second-stage verifier: a logistic regression on numbers the decoder already has,
which a model file may carry (metadata entry `verifier`) to replace the command
confidence. Fit one with `python -m training.fit_verifier`; what it gains:
benchmarks/results/verifier.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np

from speechrnn.decoding import edit_distance, greedy_text

METADATA_KEY = "verifier"
FEATURES = ("confidence as log odds", "peak letter probability", "speech-frame entropy",
            "greedy spelling's distance from the command, in edits a letter")


def verifier_inputs(log_probs: np.ndarray, confidence: float, command: str,
                    tokens: Sequence[str], blank: int = 0) -> np.ndarray:
    """The verifier's four inputs (FEATURES) for one decoded stretch of audio."""
    probs = np.exp(log_probs)
    letters = probs[:, 1:] if blank == 0 else np.delete(probs, blank, axis=1)  # no copy for 0
    peak = float(letters.max()) if letters.size else 0.0
    entropy = -(probs * log_probs).sum(axis=1)
    speech = probs[:, blank] < 0.5
    mean_entropy = float(entropy[speech].mean() if speech.any() else
                         entropy.mean() if len(entropy) else 0.0)
    spelling = greedy_text(log_probs, tokens, blank).strip()
    distance = edit_distance(spelling, command) / max(1, len(command))
    c = min(max(confidence, 1e-6), 1 - 1e-6)
    return np.array([np.log(c / (1 - c)), peak, mean_entropy, distance])


class Verifier:
    """P(the best command is right) from verifier_inputs: standardized inputs, then a
    logistic regression (weights[0] is the intercept)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], weights: Sequence[float]):
        self.mean = np.asarray(mean, dtype=float)
        self.std = np.asarray(std, dtype=float)
        self.weights = np.asarray(weights, dtype=float)
        n = len(FEATURES)
        if (self.mean.shape != (n,) or self.std.shape != (n,) or self.weights.shape != (n + 1,)
                or not (self.std > 0).all()
                or not np.isfinite(np.concatenate([self.mean, self.std, self.weights])).all()):
            raise ValueError(f"a verifier needs {n} means, {n} positive deviations and "
                             f"{n + 1} weights, all finite")

    @classmethod
    def fit(cls, inputs: np.ndarray, right: np.ndarray, l2: float = 1e-2,
            steps: int = 50) -> Verifier:
        """Fitted by Newton's method on rows of verifier_inputs and whether each row's
        command was right (1) or a false accept or wrong command (0)."""
        x, y = np.asarray(inputs, dtype=float), np.asarray(right, dtype=float)
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
        z = np.column_stack([np.ones(len(x)), (x - mean) / std])
        w = np.zeros(z.shape[1])
        for _ in range(steps):
            p = 1 / (1 + np.exp(-z @ w))
            grad = z.T @ (p - y) + l2 * w
            hess = (z * (p * (1 - p))[:, None]).T @ z + l2 * np.eye(len(w))
            w -= np.linalg.solve(hess, grad)
        return cls(mean, std, w)

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        """P(right) of each row of verifier_inputs."""
        z = (np.atleast_2d(inputs) - self.mean) / self.std
        return 1 / (1 + np.exp(-(self.weights[0] + z @ self.weights[1:])))

    def __call__(self, log_probs: np.ndarray, confidence: float, command: str,
                 tokens: Sequence[str], blank: int = 0) -> float:
        """P(right) of `command` decoded from `log_probs` with `confidence`."""
        inputs = verifier_inputs(log_probs, confidence, command, tokens, blank)
        z = float(np.dot((inputs - self.mean) / self.std, self.weights[1:]))
        return 1 / (1 + math.exp(-(self.weights[0] + z)))

    def to_json(self) -> str:
        return json.dumps({"features": list(FEATURES), "mean": self.mean.tolist(),
                           "std": self.std.tolist(), "weights": self.weights.tolist()})

    @classmethod
    def from_json(cls, text: str) -> Verifier:
        """Raises ValueError when the text is not a verifier of these FEATURES."""
        try:
            raw = json.loads(text)
            if raw.get("features") != list(FEATURES):
                raise ValueError(f"its inputs are {raw.get('features')}, not {list(FEATURES)}")
            return cls(raw["mean"], raw["std"], raw["weights"])
        except (AttributeError, KeyError, TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"not a verifier ({e})") from e
