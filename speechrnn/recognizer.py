"""The public API: a Recognizer ties model, command list, decoder and voice activity
together, and turns files or arrays into transcripts with times and confidences.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from speechrnn.audio import (
    SAMPLE_RATE,
    AudioError,
    audio_info,
    iter_blocks,
    read_audio,
    source_name,
    to_16k_mono,
)
from speechrnn.commands import (
    CommandsError,
    load_command_list,
    normalize_command_list,
    normalize_commands,
)
from speechrnn.decoding import DEFAULT_BEAM_WIDTH, CommandScorer, free_decode
from speechrnn.session import ModelError, ModelSession

# Confidence below which a command is rejected, read for model 0.6.0 and its verifier off
# the curve of false rejects against false accepts an hour
# (benchmarks/results/false_alarms.md): at 0.75 the held-out voices' commands are missed
# as often as with 0.6 on the plain confidence before the verifier (29.0 %), with 39
# false accepts an hour instead of 57. A model without a verifier at 0.75 sat at 37 an
# hour and 33.5 % misses. README, "How it decides".
DEFAULT_THRESHOLD = 0.75
SHORT_SECONDS = 10.0  # files up to this long are decoded whole
BLOCK_SECONDS = 10.0  # read size for long files; bounds memory
REGION_GAP = 0.3  # pauses shorter than this (seconds) stay inside one speech region
REGION_MIN = 0.1  # shorter loud blips are not speech regions
# Seconds of audio kept around detected speech when it is decoded: within the 0-1.2 s of
# silence or noise the model is trained with around words. Against 0.2 s, 0.5 s keeps the
# quiet starts and ends of real words (unseen real speaker, top command of 35: 62 -> 64 %;
# synthetic voices and false accepts per hour unchanged).
CONTEXT = 0.5
SILENCE_DB = -60.0  # a file whose loudest 10 ms stays below this (dB full scale) is silence


@dataclass(frozen=True)
class Segment:
    """One recognized command (or free text) and where it was spoken, in seconds."""

    text: str
    start: float
    end: float
    confidence: float


@dataclass
class Transcript:
    """What was recognized in one file or array; `error` is one sentence when it failed."""

    path: str
    text: str = ""
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "text": self.text,
                "segments": [asdict(s) for s in self.segments], "error": self.error}


@dataclass(frozen=True)
class Result:
    """The decoder's verdict on one stretch of audio."""

    text: str  # the accepted command (or free text), "" when rejected
    confidence: float
    candidate: str  # the best command even when rejected (free mode: the text)

    @property
    def accepted(self) -> bool:
        return bool(self.text)


def frame_power(audio: np.ndarray) -> np.ndarray:
    """Mean power of each whole 10 ms frame (float64), for _is_silent and speech_regions,
    which a short recording's decoding calls one after the other."""
    frame = SAMPLE_RATE // 100
    n = len(audio) // frame
    return np.square(audio[: n * frame], dtype=np.float64).reshape(n, frame).mean(axis=1)


def _is_silent(audio: np.ndarray, power: np.ndarray | None = None) -> bool:
    """No 10 ms frame reaches SILENCE_DB: digital silence or the faintest hiss. `power`:
    frame_power(audio), where the caller has it."""
    if power is None:
        power = frame_power(audio)
    if len(power) == 0:
        return (len(audio) == 0 or float(np.mean(np.square(audio, dtype=np.float64)))
                < 10 ** (SILENCE_DB / 10))
    return float(power.max()) < 10 ** (SILENCE_DB / 10)


def _percentile_10(values: np.ndarray) -> float:
    """np.percentile(values, 10) (no NaN), exactly, by a partial sort: on a clip's hundred
    frames np.percentile took about 15 times as long, more than the rest of speech_regions."""
    n = len(values)
    index = (n - 1) * 0.1  # where numpy's 'linear' method looks in the sorted values
    lo = min(int(index), n - 1)
    hi = min(lo + 1, n - 1)
    part = np.partition(values, (lo, hi) if hi != lo else lo)
    a, b, t = float(part[lo]), float(part[hi]), index - lo
    # numpy's interpolation, which counts from the nearer end
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


def speech_regions(audio: np.ndarray,
                   power: np.ndarray | None = None) -> list[tuple[int, int]]:
    """(start, end) samples of the louder stretches of a short recording, found in one
    vectorised pass: frames well above the recording's own noise floor, with short gaps
    closed and short blips dropped.

    A whole short file needs no streaming: its floor comes from all of it, so speech at
    its very first sample is found too (the streaming segmenter, speechrnn.vad, has to
    learn the floor as it goes and can miss a word there). `power`: frame_power(audio),
    where the caller has it.
    """
    frame = SAMPLE_RATE // 100
    if power is None:
        power = frame_power(audio)
    if len(power) == 0:
        return []
    db = 10 * np.log10(np.maximum(power, 1e-12))
    peak = db.max()
    floor = np.percentile(db, 10) if np.isnan(peak) else _percentile_10(db)
    loud = db > max(floor + 10.0, peak - 35.0, SILENCE_DB)
    if not loud.any():
        return []
    # Runs of loud frames, as [start, end) frame pairs.
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
    runs = edges.reshape(-1, 2).tolist()
    merged = [runs[0]]
    for a, b in runs[1:]:
        if a - merged[-1][1] < REGION_GAP * 100:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return [(a * frame, b * frame) for a, b in merged if b - a >= REGION_MIN * 100]


def speech_piece(audio: np.ndarray, offset: int = 0,
                 regions: list[tuple[int, int]] | None = None) -> tuple[float, float, np.ndarray]:
    """(start, end, audio to decode) of the speech in `audio`: from the first to the last
    speech region (found with speech_regions unless given), with CONTEXT seconds around.

    Times are seconds, counting `audio[0]` as sample `offset` of the stream. Used for every
    stretch the recognizer decodes (the stream engine can use it too), because the model
    fails when speech sits in much more silence or noise than it was trained with.
    """
    if not regions:
        regions = speech_regions(audio) or [(0, len(audio))]
    first, last = regions[0][0], regions[-1][1]
    pad = int(CONTEXT * SAMPLE_RATE)
    return ((offset + first) / SAMPLE_RATE, (offset + last) / SAMPLE_RATE,
            audio[max(0, first - pad):last + pad])


def _segment(text: str, start: float, end: float, confidence: float) -> Segment:
    return Segment(text, round(start, 3), round(end, 3), round(confidence, 4))


class Recognizer:
    """Speech commands (or free text) of audio files and arrays.

    model: path of an ONNX model, a ModelSession, or None for the bundled model.
    commands: a commands file (str or Path), a list of commands, or None for the list
        stored in the model.
    threshold: confidence below which a command is rejected (default DEFAULT_THRESHOLD;
        in free mode nothing is rejected unless a threshold is given). A command written
        with its own threshold between slashes ("jarvis /0.05/", in a file or a list)
        is held to that one instead (`thresholds`).
    free: transcribe without a command list (CTC prefix beam search).
    verify: where the model carries a verifier (speechrnn.verifier), its probability that
        the best command is right is the confidence; False keeps the decoder's own.
    Raises ModelError or CommandsError with one sentence when either cannot be used.

    Thread-safe: decoding changes nothing in a Recognizer (onnxruntime's run is
    thread-safe), so threads may share one and get what one thread gets
    (tests/test_concurrency.py). Each `listen()` or StreamEngine is one stream's state:
    use it from one thread at a time.
    """

    def __init__(self, model: str | Path | ModelSession | None = None,
                 commands: str | Path | Sequence[str] | None = None,
                 threshold: float | None = None, *, free: bool = False, threads: int = 1,
                 beam_width: int = DEFAULT_BEAM_WIDTH, verify: bool = True):
        self.session = model if isinstance(model, ModelSession) else ModelSession(model,
                                                                                  threads)
        self.info = self.session.info
        self.free = free
        tokens = self.info.tokens
        self.thresholds: dict[str, float] = {}  # commands' own thresholds
        if free:
            self.commands: list[str] = []
        elif commands is None:
            if not self.info.default_commands:
                raise CommandsError(f"model {self.info.path} has no default command list; "
                                    "give a commands file or use free mode")
            self.commands = normalize_commands(self.info.default_commands, tokens)
        elif isinstance(commands, str | Path):
            self.commands, self.thresholds = load_command_list(commands, tokens)
        else:
            self.commands, self.thresholds = normalize_command_list(commands, tokens)
        if threshold is None:
            threshold = 0.0 if free else DEFAULT_THRESHOLD
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {threshold}")
        self.threshold = float(threshold)
        self.beam_width = beam_width
        self.scorer = None if free else CommandScorer(
            self.commands, tokens, self.info.blank_index, beam_width=beam_width)
        self.verifier = self.info.verifier if verify and not free else None

    # -- decoding stretches of audio (also what the stream engine uses) ----------------

    def decode(self, log_probs: np.ndarray) -> Result:
        """Verdict on model output [frames, tokens] for one stretch of audio."""
        if self.scorer is None:
            free = free_decode(log_probs, self.info.tokens, self.info.blank_index,
                               self.beam_width)
            accepted = free.text if free.confidence >= self.threshold else ""
            return Result(accepted, free.confidence, free.text)
        match = self.scorer.score(log_probs)
        confidence = match.confidence
        if self.verifier is not None and match.command:
            confidence = self.verifier(log_probs, confidence, match.command,
                                       self.info.tokens, self.info.blank_index)
        threshold = self.thresholds.get(match.command, self.threshold)
        accepted = match.command if confidence >= threshold else ""
        return Result(accepted, confidence, match.command)

    def recognize(self, audio: np.ndarray) -> Result:
        """Verdict on 16 kHz mono float32 audio holding at most one command."""
        return self.decode(self.session.log_probs(audio))

    # -- whole files and arrays ------------------------------------------------------

    def transcribe(self, path_or_array: str | Path | BinaryIO | np.ndarray,
                   sample_rate: int | None = None) -> Transcript:
        """Commands spoken in a file, a binary file object (io.BytesIO of an upload, an
        open file) or an array, with times and confidences.

        An array is [samples] or [samples, channels] at `sample_rate` (default 16 kHz,
        4-768 kHz accepted); one that is not audio (shape, dtype, rate) raises ValueError.
        Problems with a file come back as `Transcript.error`, never as an exception.
        """
        if isinstance(path_or_array, str | Path):
            return self._transcribe_file(Path(path_or_array))
        if hasattr(path_or_array, "read"):  # a binary file object: an upload, a BytesIO
            path = source_name(path_or_array, unnamed="<stream>")
            try:
                transcript = self.transcribe(read_audio(path_or_array))
            except (AudioError, ModelError) as e:
                transcript = Transcript(path=path, error=str(e))
            transcript.path = path
            return transcript
        audio = to_16k_mono(path_or_array, sample_rate or SAMPLE_RATE)
        transcript = Transcript(path="<array>")
        if not np.isfinite(audio).all():
            transcript.error = "the audio array contains NaN or infinite samples"
            return transcript
        if len(audio) <= SHORT_SECONDS * SAMPLE_RATE:
            transcript.segments = self._short(audio)
        else:
            step = int(BLOCK_SECONDS * SAMPLE_RATE)
            blocks = (audio[i:i + step] for i in range(0, len(audio), step))
            transcript.segments = list(self._long(blocks))
        transcript.text = " ".join(s.text for s in transcript.segments)
        return transcript

    def transcribe_many(self, paths: Iterable[str | Path]) -> Iterator[Transcript]:
        """Transcripts of several files, in order."""
        for path in paths:
            yield self.transcribe(path)

    def _transcribe_file(self, path: Path) -> Transcript:
        transcript = Transcript(path=str(path))
        try:
            if audio_info(path).duration <= SHORT_SECONDS:
                transcript.segments = self._short(read_audio(path))
            else:
                transcript.segments = list(self._long(iter_blocks(path, BLOCK_SECONDS)))
        except (AudioError, ModelError) as e:
            transcript.segments = []
            transcript.error = str(e)
        transcript.text = " ".join(s.text for s in transcript.segments)
        return transcript

    def _short(self, audio: np.ndarray) -> list[Segment]:
        """A short recording: its speech decoded as a whole, or region by region if it
        holds several commands."""
        power = frame_power(audio)
        if _is_silent(audio, power):
            return []
        regions = speech_regions(audio, power)
        found = self._decode_pieces([speech_piece(audio, regions=regions)])
        if found or len(regions) < 2:
            return found
        return self._decode_pieces([speech_piece(audio, regions=[r]) for r in regions])

    def _long(self, blocks: Iterable[np.ndarray]) -> Iterator[Segment]:
        """A long recording through the stream engine as fast as it goes: the same
        segmentation and verdicts as `listen` on the same audio."""
        from speechrnn.stream import StreamEngine

        for event in StreamEngine(self, partials=False).run(blocks):
            if event.type == "command":
                yield _segment(event.text, event.start, event.end, event.confidence)

    def _decode_pieces(self, pieces: list[tuple[float, float, np.ndarray]]) -> list[Segment]:
        """Segments of the pieces (start, end, audio) whose command is accepted."""
        found = []
        outputs = self.session.log_probs_batch([audio for _, _, audio in pieces])
        for (start, end, _), log_probs in zip(pieces, outputs, strict=True):
            result = self.decode(log_probs)
            if result.accepted:
                found.append(_segment(result.text, start, end, result.confidence))
        return found

    def listen(self, device: int | str | None = None, **kw):
        """Live recognition from a microphone: yields events (see speechrnn.stream)."""
        from speechrnn.stream import listen

        return listen(self, device=device, **kw)
