"""Voice activity detection and endpointing: 16 kHz float32 blocks of any size in, speech
segments out; the one segmenter that live listening and file transcription both use.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields

import numpy as np

SAMPLE_RATE = 16000
FRAME_SECONDS = 0.01
_FLOOR_EVERY = 5  # frames between noise-floor updates; a percentile per frame is wasteful
_SILENT_DB = -120.0


@dataclass(frozen=True)
class VadConfig:
    """Segmenter settings; times in seconds, levels in dB."""

    onset_db: float = 10.0
    release_db: float = 5.0
    end_db: float = 12.0
    peak_drop_db: float = 30.0
    min_level_db: float = -65.0
    floor_window: float = 2.0
    floor_percentile: float = 10.0
    hangover: float = 0.3
    min_speech: float = 0.12
    pre_roll: float = 0.2
    post_roll: float = 0.1
    max_segment: float = 8.0
    band_hz: tuple[float, float] = (200.0, 7000.0)

    def __post_init__(self) -> None:
        if self.release_db > self.onset_db:
            raise ValueError("release_db must not exceed onset_db")
        if self.post_roll > self.hangover:
            raise ValueError("post_roll must not exceed hangover")
        if self.max_segment < 1.0:
            raise ValueError("max_segment must be at least 1 second")

    @classmethod
    def from_params(cls, **params) -> VadConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise TypeError(f"unknown VAD setting(s): {', '.join(unknown)}")
        return cls(**params)


@dataclass
class Segment:
    """One stretch of speech. Sample indices count from the start of the stream."""

    start: int  # first sample of speech
    end: int  # one past the last sample of speech
    offset: int  # stream index of audio[0]
    audio: np.ndarray  # speech with pre-roll and post-roll padding
    sample_rate: int = SAMPLE_RATE

    @property
    def start_time(self) -> float:
        return self.start / self.sample_rate

    @property
    def end_time(self) -> float:
        return self.end / self.sample_rate

    @property
    def duration(self) -> float:
        return (self.end - self.start) / self.sample_rate


def as_block(block) -> np.ndarray:
    """A block as contiguous 1-D float32; [n, 1] columns are accepted."""
    block = np.asarray(block)
    if block.ndim == 2 and block.shape[1] == 1:
        block = block[:, 0]
    if block.ndim != 1:
        raise ValueError(f"audio blocks must be 1-D mono, not shape {block.shape}")
    return np.ascontiguousarray(block, dtype=np.float32)


class Segmenter:
    """Stateful endpointer; feed it blocks with `push`, finish with `flush`.

    How it decides, frame by frame (10 ms):

    - energy: power in the 200-7000 Hz band of a Hann-windowed frame, smoothed over three
      frames, in dB (0 dB = full-scale mean square). The band leaves out a DC offset and hum.
    - noise floor: a low percentile (10th) of the energies of the last `floor_window`
      seconds, so it follows steady noise or music up and down within a second or two while
      short commands barely move it. At the start of a stream it is the low percentile of
      what has been heard so far, so loud noise at the start is not taken for speech, and
      speech at the very start is still found at its first rise (pre-roll covers the rest).
    - a segment opens on a frame `onset_db` above the floor (and above `min_level_db`), stays
      open while frames are speech, and ends after `hangover` seconds without speech. A frame
      of an open segment is speech when it is `release_db` above the floor, `end_db` above
      the quietest frame of the segment's pre-roll (the sound just before it: when the
      background has just risen, the floor lags behind; but never more than `onset_db`
      below the segment's loudest frame, so quiet words still count), and at most
      `peak_drop_db` below the loudest frame (a reverberation tail, breath, or noise rising
      towards the next word is not more of this word). The last two end a segment where its
      word ends, so commands with short pauses come apart and results come early.
      Segments with less than `min_speech` seconds of speech are dropped; longer than
      `max_segment` seconds are cut at their quietest frame near the limit.

    A Segment's `start`/`end` are the samples where speech begins and ends; its `audio` also
    holds `pre_roll` seconds before and `post_roll` seconds after (less at the stream's edges).

    Batch use::

        for seg in segments(blocks):            # blocks: iterable of 1-D float32 at 16 kHz
            decode(seg.audio)                   # seg.start_time / seg.end_time in seconds

    Streaming use (what speechrnn.stream does): `Segmenter.push(block)` returns the segments
    that ended in that block, `Segmenter.frames(block)` stops after every frame; there
    `active`, `confirmed`, `speech_end`, `trailing_silence`, `snapshot()` and
    `current_audio()` describe the open segment, and `cut()` ends it early.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, config: VadConfig | None = None,
                 **params) -> None:
        if config is not None and params:
            raise TypeError("give either config or keyword settings, not both")
        self.config = config or VadConfig.from_params(**params)
        self.sample_rate = sample_rate
        c, fs = self.config, sample_rate
        self.frame = int(round(FRAME_SECONDS * fs))
        frames = lambda seconds: max(1, int(round(seconds / FRAME_SECONDS)))  # noqa: E731
        self._hangover = frames(c.hangover)
        self._min_speech = frames(c.min_speech)
        self._pre_roll = int(round(c.pre_roll / FRAME_SECONDS))
        self._post_roll = int(round(c.post_roll / FRAME_SECONDS))
        self._max_frames = frames(c.max_segment)
        self._floor_frames = frames(c.floor_window)
        # Periodic Hann: a constant (DC offset) lands only in bins 0 and 1, below the band.
        self._window = np.hanning(self.frame + 1)[:-1].astype(np.float32)
        bins = np.fft.rfftfreq(self.frame, 1.0 / fs)
        self._band = (bins >= c.band_hz[0]) & (bins <= c.band_hz[1])
        self._scale = 2.0 / (self.frame * float(np.sum(self._window**2)))

        self._pending = np.zeros(0, np.float32)
        self._frames_seen = 0
        self._last_powers = np.zeros(0)  # the two before this block, for smoothing
        self._recent = np.zeros(0)  # energies of the last floor_window, for the floor
        self.floor_db = c.min_level_db
        self._history: deque[np.ndarray] = deque(maxlen=max(self._pre_roll, 1))
        self._history_db: deque[float] = deque(maxlen=max(self._pre_roll, 1))
        self._reset_segment()

    # -- state of the open segment ------------------------------------------------------

    def _reset_segment(self) -> None:
        self.active = False
        self._seg_frames: list[np.ndarray] = []
        self._seg_energy: list[float] = []
        self._seg_voiced: list[bool] = []
        self._peak = -np.inf  # loudest frame of the open segment, dB
        self._local_floor = -np.inf  # quietest frame of its pre-roll, dB
        self._seg_offset = 0  # first frame of the segment's audio (pre-roll included)
        self._speech_start = 0  # frame indices
        self._speech_end = 0
        self._voiced = 0

    @property
    def position(self) -> int:
        """Samples analysed so far (a multiple of the 10 ms frame until `flush`)."""
        return self._frames_seen * self.frame

    @property
    def confirmed(self) -> bool:
        """The open segment holds at least `min_speech` of speech, so it will be kept."""
        return self.active and self._voiced >= self._min_speech

    @property
    def speech_start(self) -> int:
        return self._speech_start * self.frame

    @property
    def speech_end(self) -> int:
        """One past the last sample of speech in the open segment so far."""
        return self._speech_end * self.frame

    @property
    def trailing_silence(self) -> float:
        """Seconds since the open segment's last speech frame."""
        return (self._frames_seen - self._speech_end) * FRAME_SECONDS if self.active else 0.0

    def snapshot(self) -> Segment:
        """The open segment as it would be if it ended now."""
        stop = min(self._frames_seen, self._speech_end + self._post_roll)
        return self._make(self._speech_start, self._speech_end, stop)

    def current_audio(self) -> np.ndarray:
        """All audio of the open segment so far, pre-roll included."""
        return np.concatenate(self._seg_frames) if self._seg_frames else np.zeros(0, np.float32)

    def cut(self) -> Segment | None:
        """End the open segment now (when the caller already knows it is complete).

        Returns it if it is confirmed; frames after it count as silence until the next onset.
        """
        seg = self.snapshot() if self.confirmed else None
        # The silence after the speech is the next segment's pre-roll.
        self._history.extend(self._seg_frames[self._speech_end - self._seg_offset:])
        self._history_db.extend(self._seg_energy[self._speech_end - self._seg_offset:])
        self._reset_segment()
        return seg

    # -- feeding ---------------------------------------------------------------------

    def push(self, block) -> list[Segment]:
        """Analyse one block; returns the segments that ended within it, in order."""
        return [seg for seg in self.frames(block) if seg is not None]

    def frames(self, block) -> Iterator[Segment | None]:
        """Analyse one block frame by frame: yields after each 10 ms frame the segment that
        ended there, or None. Between frames the caller sees the state at that frame and
        may `cut()` the open segment (what the stream engine does)."""
        block = as_block(block)
        if len(self._pending):
            block = np.concatenate([self._pending, block])
        n = len(block) // self.frame
        self._pending = block[n * self.frame:].copy()
        if n == 0:
            return
        frames = block[: n * self.frame].reshape(n, self.frame)
        energy = self._energies(self._band_power(frames))
        floor = self._floors(energy)
        c = self.config
        loud = energy > c.min_level_db
        onset = (loud & (energy > floor + c.onset_db)).tolist()
        voiced = (loud & (energy > floor + c.release_db)).tolist()
        self.floor_db = float(floor[-1])
        levels = energy.tolist()
        for i in range(n):
            yield self._step(frames[i], onset[i], voiced[i], levels[i])

    def flush(self) -> list[Segment]:
        """End of stream: the open segment, if it is long enough, ends where audio ends."""
        tail = self._pending
        self._pending = np.zeros(0, np.float32)
        if not self.active:
            return []
        seg = None
        if self.confirmed:
            stop = min(self._frames_seen, self._speech_end + self._post_roll)
            seg = self._make(self._speech_start, self._speech_end, stop)
            if stop == self._frames_seen and len(tail):
                seg.audio = np.concatenate([seg.audio, tail])
        self._reset_segment()
        return [seg] if seg is not None else []

    # -- internals -------------------------------------------------------------------

    def _band_power(self, frames: np.ndarray) -> np.ndarray:
        spec = np.fft.rfft(frames * self._window, axis=1)
        return (np.abs(spec[:, self._band]) ** 2).sum(axis=1) * self._scale

    def _energies(self, power: np.ndarray) -> np.ndarray:
        """Frame energies in dB, each the mean power of its frame and the two before."""
        if len(self._last_powers) == 0:
            self._last_powers = np.full(2, power[0])
        ext = np.concatenate([self._last_powers, power])
        self._last_powers = ext[-2:]
        smoothed = (ext[2:] + ext[1:-1] + ext[:-2]) / 3.0
        return 10.0 * np.log10(np.maximum(smoothed, 10 ** (_SILENT_DB / 10)))

    def _floors(self, energy: np.ndarray) -> np.ndarray:
        """The noise floor in force at each frame of a block: a low percentile of the
        energies of the window ending there, refreshed every few frames."""
        window, n = self._floor_frames, len(energy)
        ext = np.concatenate([self._recent, energy])
        base = len(self._recent)
        q = self.config.floor_percentile / 100.0
        index = self._frames_seen + np.arange(n)
        updates = np.flatnonzero((index % _FLOOR_EVERY == 0) | (index < _FLOOR_EVERY))
        values = [self.floor_db]
        for i in updates.tolist():
            seen = ext[max(0, base + i + 1 - window):base + i + 1]
            k = int(q * (len(seen) - 1))
            values.append(float(np.partition(seen, k)[k]))
        # Each frame takes the latest update at or before it (value 0: the floor before).
        latest = np.zeros(n, dtype=np.int64)
        latest[updates] = np.arange(1, len(updates) + 1)
        floors = np.asarray(values)[np.maximum.accumulate(latest)]
        self._recent = ext[-window:]
        return floors

    def _step(self, frame: np.ndarray, onset: bool, voiced: bool, energy: float
              ) -> Segment | None:
        index = self._frames_seen
        self._frames_seen += 1
        if not self.active:
            if onset:
                self._open(index, frame, energy)
            else:
                self._history.append(frame)
                self._history_db.append(energy)
            return None
        self._seg_frames.append(frame)
        self._seg_energy.append(energy)
        # Speech stands end_db above the sound before the segment (capped onset_db under
        # the loudest frame, so a word 10 dB over the noise still counts) and within
        # peak_drop_db of the loudest frame (a reverberation tail, breath, or a noise bed
        # rising towards the next word is not more of this word).
        c = self.config
        end_level = min(self._local_floor + c.end_db, self._peak - c.onset_db)
        voiced = voiced and energy > max(end_level, self._peak - c.peak_drop_db)
        self._peak = max(self._peak, energy)
        self._seg_voiced.append(voiced)
        if voiced:
            self._speech_end = index + 1
            self._voiced += 1
        if self._frames_seen - self._speech_end >= self._hangover:
            return self.cut()
        if self._frames_seen - self._speech_start >= self._max_frames:
            return self._split()
        return None

    def _open(self, index: int, frame: np.ndarray, energy: float) -> None:
        self.active = True
        pre = list(self._history)[-self._pre_roll:] if self._pre_roll else []
        before = list(self._history_db)[-self._pre_roll:] if self._pre_roll else []
        self._history.clear()
        self._history_db.clear()
        # The sound just before the onset: when the background has just risen (a noisier
        # room, a fan), the running floor lags behind it and would hold the segment open.
        self._local_floor = min(before) if before else -np.inf
        self._seg_frames = [*pre, frame]
        self._seg_energy = [np.nan] * len(pre) + [energy]
        self._seg_voiced = [False] * len(pre) + [True]
        self._seg_offset = index - len(pre)
        self._speech_start = index
        self._speech_end = index + 1
        self._voiced = 1
        self._peak = energy

    def _split(self) -> Segment | None:
        """Cut an overlong segment at its quietest frame in the last quarter; the rest
        opens the next segment."""
        first = self._speech_start + (3 * self._max_frames) // 4 - self._seg_offset
        energies = np.asarray(self._seg_energy[first:])
        at = first + int(np.nanargmin(energies)) + 1  # cut after the quietest frame
        cut_frame = self._seg_offset + at
        seg = self._make(self._speech_start, cut_frame, cut_frame) if self.confirmed else None
        rest = self._seg_frames[at:], self._seg_energy[at:], self._seg_voiced[at:]
        voiced = [i for i, v in enumerate(rest[2]) if v]
        local_floor = self._local_floor
        self._reset_segment()
        if voiced:
            self.active = True
            self._local_floor = local_floor
            self._seg_frames, self._seg_energy, self._seg_voiced = rest
            self._seg_offset = self._speech_start = cut_frame
            self._speech_end = cut_frame + voiced[-1] + 1
            self._voiced = len(voiced)
            self._peak = float(np.nanmax(rest[1]))
        else:
            self._history.extend(rest[0])
            self._history_db.extend(rest[1])
        return seg

    def _make(self, start: int, end: int, stop: int) -> Segment:
        frames = self._seg_frames[: max(0, stop - self._seg_offset)]
        audio = np.concatenate(frames) if frames else np.zeros(0, np.float32)
        return Segment(start=start * self.frame, end=end * self.frame,
                       offset=self._seg_offset * self.frame, audio=audio,
                       sample_rate=self.sample_rate)


def segments(blocks: Iterable, sample_rate: int = SAMPLE_RATE,
             **params) -> Iterator[Segment]:
    """Speech segments of a stream of 1-D float32 blocks (any sizes), in order.

    `params` are VadConfig fields (onset_db, hangover, max_segment, ...). Memory stays
    bounded by one segment, so this works on files of any length read block by block.
    """
    seg = Segmenter(sample_rate, **params)
    for block in blocks:
        yield from seg.push(block)
    yield from seg.flush()


def split(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, **params) -> list[Segment]:
    """Speech segments of one whole signal."""
    return list(segments([audio], sample_rate, **params))
