"""The streaming engine: 16 kHz float32 blocks in, recognition events out (partial,
command, rejected), plus `listen`, which feeds it from a microphone or a file.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from speechrnn.vad import SAMPLE_RATE, Segment, Segmenter, VadConfig, as_block

STEP = 320  # samples per engine step (20 ms): the grid every decision is taken on
PARTIAL_INTERVAL = 0.25
# Confidence at which a command is final before the hangover; 0 means "once accepted",
# which keeps latency near post_roll for every accepted command (raise it to trade
# latency for fewer early cuts on long pauses inside a command).
EARLY_CONFIDENCE = 0.0
# Seconds of blank model output after the last character that end a segment whose
# command is certain, when the VAD still hears sound (music, noise, a talkative room).
MODEL_ENDPOINT = 0.3
MIN_COMMAND = 0.2  # seconds of speech before the model's end that a model endpoint needs

EventType = Literal["partial", "command", "rejected"]


@dataclass
class Event:
    """One recognition result.

    text: the command (`command`), the closest command or free text (`rejected`), or the
    greedy transcription so far (`partial`). confidence: the decoder's confidence in that
    command, or for a partial the network's mean best-token probability.
    start, end: seconds of stream time where the speech begins and ends (for a partial,
    `end` is how far the audio decoded so far reaches). latency: wall-clock seconds from
    the arrival of the block holding `end` to the emission of this event.
    """

    type: EventType
    text: str
    confidence: float
    start: float
    end: float
    latency: float

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "text": self.text,
                "confidence": round(float(self.confidence), 4),
                "start": round(self.start, 3), "end": round(self.end, 3),
                "latency": round(self.latency, 4)}


@dataclass(frozen=True)
class Hypothesis:
    """A decoder's verdict on a finished segment."""

    text: str
    confidence: float
    accepted: bool  # a command at or above the threshold (or any text without commands)
    certain: bool = False  # nothing heard later could change it: safe to emit early
    heard: bool = True  # the model heard speech at all; if not, a rejection is not news
    span: tuple[int, int] | None = None  # speech's first and last sample in the decoded audio


@dataclass(frozen=True)
class Partial:
    """A decoder's reading of a growing segment."""

    text: str
    confidence: float
    speech_end: float | None = None  # seconds into the audio where its last character ends


class Decoder(Protocol):
    """What the engine needs from a model; tests plug in fakes."""

    def partial(self, audio: np.ndarray) -> Partial: ...

    def final(self, audio: np.ndarray) -> Hypothesis: ...


class SegmentDecoder:
    """A Recognizer seen by the engine: greedy partials, and finals decided exactly as
    `Recognizer.transcribe` decides them (`Recognizer.decode`), so that streaming and
    batch agree on the same audio.
    """

    def __init__(self, recognizer, early_confidence: float = EARLY_CONFIDENCE):
        self.recognizer = recognizer
        self.session = recognizer.session
        info = self.session.info
        self.tokens = list(info.tokens)
        self.blank = info.blank_index
        self.frame_rate = info.frame_rate
        self.early_confidence = max(early_confidence, recognizer.threshold)
        commands = list(recognizer.commands)
        # A command that another one starts with cannot be final before silence proves it.
        self._extendable = {a for a in commands for b in commands if b.startswith(a + " ")}

    def partial(self, audio: np.ndarray) -> Partial:
        from speechrnn.decoding import greedy_text

        log_probs = self.session.log_probs(audio)
        if len(log_probs) == 0:
            return Partial("", 0.0)
        # How sure the network is of its own best path: mean best-token probability.
        confidence = float(np.exp(log_probs.max(axis=1).mean()))
        spoken = np.flatnonzero(log_probs.argmax(axis=1) != self.blank)
        end = (int(spoken[-1]) + 1) / self.frame_rate if len(spoken) else None
        return Partial(greedy_text(log_probs, self.tokens, self.blank), confidence, end)

    def final(self, audio: np.ndarray) -> Hypothesis:
        from speechrnn.recognizer import speech_piece

        # The same crop `transcribe` decodes, so that both give the same verdict and times.
        start, end, piece = speech_piece(audio)
        span = (int(round(start * SAMPLE_RATE)), int(round(end * SAMPLE_RATE)))
        log_probs = self.session.log_probs(piece)
        result = self.recognizer.decode(log_probs)
        if not result.accepted:
            heard = bool((log_probs.argmax(axis=1) != self.blank).any())
            return Hypothesis(result.candidate, result.confidence, accepted=False, heard=heard,
                              span=span)
        # Free transcription can always go on, so only commands are ever certain early.
        certain = (bool(self.recognizer.commands) and result.confidence >= self.early_confidence
                   and result.text not in self._extendable)
        return Hypothesis(result.text, result.confidence, accepted=True, certain=certain,
                          span=span)


class StreamEngine:
    """Endpointing plus rolling decoding over a stream of blocks.

    Feed it with `process(block)` (returns the events that block completes) and `flush()`
    at the end, or let `run(blocks)` do both. A block may be an array or a pair
    (array, arrival time on `clock`) when its source knows when it was captured.

    It does not know where blocks come from; `listen` connects it to a microphone or a file.

    How a segment becomes events (see speechrnn.vad for the segmenter):

    - while speech goes on, the growing segment is re-decoded every `partial_interval`
      seconds of audio (less often for long segments) and a `partial` event carries the
      greedy transcription whenever it changes;
    - `post_roll` seconds after the last speech frame, the segment's final audio is decoded
      once; if the best command is already certain (accepted, confident, and no longer
      command starts with it), its `command` event is emitted at once and the segment ends;
    - otherwise the engine waits for the VAD's hangover: if speech resumes the segment goes
      on, if not the result already decoded becomes a `command` or `rejected` event;
    - when background sound keeps the VAD from hearing an end (music, noise), the model
      can: once a partial shows `model_endpoint` seconds of blank output after the last
      character, the audio up to that character (plus post_roll) is decoded, and a
      certain command is emitted and the segment ended;
    - a rejected segment in which the model heard no character at all gives no event.

    Every decision is taken on a fixed 20 ms grid of stream samples, so the events do not
    depend on how the input is cut into blocks; only the latencies do.

    `partials=False` (what `Recognizer.transcribe` uses for long recordings) emits no
    `partial` events and skips the partial decodes that cannot end a segment; the other
    events are exactly those of a live run on the same audio.
    """

    def __init__(self, recognizer=None, *, decoder: Decoder | None = None,
                 sample_rate: int = SAMPLE_RATE, vad: VadConfig | dict | None = None,
                 partial_interval: float | None = PARTIAL_INTERVAL,
                 model_endpoint: float | None = MODEL_ENDPOINT,
                 clock: Callable[[], float] = time.monotonic, partials: bool = True):
        if decoder is None:
            if recognizer is None:
                raise TypeError("StreamEngine needs a recognizer or a decoder")
            decoder = SegmentDecoder(recognizer)
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"the engine takes {SAMPLE_RATE} Hz audio, not {sample_rate} Hz")
        self.decoder = decoder
        self.sample_rate = sample_rate
        if isinstance(vad, dict):
            vad = VadConfig.from_params(**vad)
        self.segmenter = Segmenter(sample_rate, config=vad or VadConfig())
        self._post_roll = int(round(self.segmenter.config.post_roll * sample_rate))
        self._min_command = int(round(MIN_COMMAND * sample_rate))
        self.partial_interval = partial_interval
        self.model_endpoint = model_endpoint
        self.partials = partials
        # Without partial events (batch transcription), a partial decode is needed only
        # where it could find a model endpoint: a command's worth of speech and a blank
        # stretch after it. Skipping the others leaves every decision as it was.
        self._endpoint_from = (None if model_endpoint is None else
                               int((MIN_COMMAND + model_endpoint) * sample_rate) - 1)
        self.clock = clock
        self._received = 0
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=8192)
        self._reset_segment_state()

    def _reset_segment_state(self) -> None:
        self._last_partial_pos = 0
        self._last_partial_text = ""
        self._pending: tuple[int, int, Hypothesis] | None = None  # (start, end, verdict)

    @property
    def position(self) -> float:
        """Seconds of audio received so far."""
        return self._received / self.sample_rate

    def run(self, blocks: Iterable) -> Iterator[Event]:
        """Events of a whole stream, as soon as each is known."""
        for item in blocks:
            if isinstance(item, tuple):
                yield from self.process(*item)
            else:
                yield from self.process(item)
        yield from self.flush()

    def process(self, block, arrival: float | None = None) -> list[Event]:
        block = as_block(block)
        self._received += len(block)
        self._arrivals.append((self._received, self.clock() if arrival is None else arrival))
        seg = self.segmenter
        events: list[Event] = []
        # The segmenter analyses the whole block at once and stops after every frame, so
        # that decisions fall on the STEP grid whatever the block sizes.
        for done in seg.frames(block):
            if done is not None:
                events += self._finish(done)
            if seg.position % STEP == 0:
                events += self._step()
        return events

    def flush(self) -> list[Event]:
        """End of stream: finish the open segment."""
        events: list[Event] = []
        for seg in self.segmenter.flush():
            events += self._finish(seg)
        return events

    # -- internals ---------------------------------------------------------------------

    def _step(self) -> list[Event]:
        seg = self.segmenter
        events: list[Event] = []
        if not seg.confirmed:
            return events
        silence = seg.position - seg.speech_end
        if silence >= self._post_roll:
            if self._pending is None or self._pending[:2] != (seg.speech_start, seg.speech_end):
                verdict = self.decoder.final(seg.snapshot().audio)
                self._pending = (seg.speech_start, seg.speech_end, verdict)
                if verdict.certain:
                    events += self._finish(seg.cut())
        elif self._partial_due():
            events += self._partial()
        return events

    def _partial_due(self) -> bool:
        if self.partial_interval is None:
            return False
        seg = self.segmenter
        # Re-decoding the whole segment costs its length, so long segments are redone
        # less often: the total work stays a few times the segment's length.
        interval = max(self.partial_interval, 0.25 * (seg.position - seg.speech_start)
                       / self.sample_rate)
        since = seg.position - max(self._last_partial_pos, seg.speech_start)
        return since >= interval * self.sample_rate

    def _partial(self) -> list[Event]:
        seg = self.segmenter
        self._last_partial_pos = seg.position
        if not self.partials and (self._endpoint_from is None
                                  or seg.position - seg.speech_start < self._endpoint_from):
            return []
        audio = seg.current_audio()
        partial = self.decoder.partial(audio)
        events = []
        if self.partials and partial.text and partial.text != self._last_partial_text:
            self._last_partial_text = partial.text
            events.append(self._event("partial", partial.text, partial.confidence,
                                      seg.speech_start, seg.position))
        if (self.model_endpoint is not None and partial.speech_end is not None
                and len(audio) / self.sample_rate - partial.speech_end >= self.model_endpoint):
            events += self._model_endpoint(audio, partial.speech_end)
        return events

    def _model_endpoint(self, audio: np.ndarray, speech_end: float) -> list[Event]:
        """End the segment where the model heard its last character, if the command
        there is certain."""
        seg = self.segmenter
        offset = seg.position - len(audio)
        end = offset + int(round(speech_end * self.sample_rate))
        if end - seg.speech_start < self._min_command:
            return []  # characters in the pre-roll or a blip: not a command's worth of speech
        if self._pending is not None and self._pending[:2] == (seg.speech_start, end):
            return []  # this end was already tried and was not certain
        stop = min(len(audio), end - offset + self._post_roll)
        verdict = self.decoder.final(audio[:stop])
        self._pending = (seg.speech_start, end, verdict)
        if not verdict.certain:
            return []
        segment = Segment(seg.speech_start, end, offset, audio[:stop], self.sample_rate)
        seg.cut()
        return self._finish(segment)

    def _finish(self, segment: Segment | None) -> list[Event]:
        pending = self._pending
        self._reset_segment_state()
        if segment is None:
            return []
        if pending is not None and pending[:2] == (segment.start, segment.end):
            verdict = pending[2]
        else:
            verdict = self.decoder.final(segment.audio)
        if not verdict.accepted and not verdict.heard:
            return []
        kind: EventType = "command" if verdict.accepted else "rejected"
        start, end = segment.start, segment.end
        if verdict.span is not None:
            start, end = segment.offset + verdict.span[0], segment.offset + verdict.span[1]
        return [self._event(kind, verdict.text, verdict.confidence, start, end)]

    def _event(self, kind: EventType, text: str, confidence: float, start: int,
               end: int) -> Event:
        now = self.clock()
        return Event(kind, text, float(confidence), start / self.sample_rate,
                     end / self.sample_rate, max(0.0, now - self._arrival_of(end - 1)))

    def _arrival_of(self, sample: int) -> float:
        """Arrival time of the block that held `sample` (searching from the newest)."""
        found = self._arrivals[-1][1] if self._arrivals else self.clock()
        for end, t in reversed(self._arrivals):
            if end <= sample:
                break
            found = t
        return found


def file_blocks(path: str | Path, block_seconds: float = 0.05, realtime: bool = False,
                clock: Callable[[], float] = time.monotonic) -> Iterator[tuple[np.ndarray, float]]:
    """A file's 16 kHz blocks with arrival times; paced like a microphone if `realtime`.
    The path "-" reads a recording piped to standard input, each block as it arrives."""
    from speechrnn.audio import STDIN, iter_blocks, iter_stdin_blocks

    start = clock()
    sent = 0
    source = (iter_stdin_blocks(block_seconds) if str(path) == STDIN
              else iter_blocks(path, block_seconds=max(block_seconds, 1.0)))
    for big in source:
        size = max(1, int(round(block_seconds * SAMPLE_RATE)))
        for i in range(0, len(big), size):
            block = big[i:i + size]
            sent += len(block)
            if realtime:
                # A microphone delivers a block once its last sample has been captured.
                delay = start + sent / SAMPLE_RATE - clock()
                if delay > 0:
                    time.sleep(delay)
            yield block, clock()


def listen(recognizer, device: int | str | None = None, input: str | Path | None = None,
           realtime: bool = False, block_seconds: float = 0.05, **engine_params
           ) -> Iterator[Event]:
    """Events from a microphone (`device`: index, name or None for the default) or, with
    `input`, from an audio file played through the same engine ("-": a recording piped
    to standard input, such as `arecord -t wav`'s).

    `engine_params` go to StreamEngine (vad=..., partial_interval=...). Stop by closing
    the generator or with Ctrl-C; the microphone is released either way.
    """
    engine = StreamEngine(recognizer, **engine_params)
    if input is not None:
        yield from engine.run(file_blocks(input, block_seconds, realtime))
        return
    from speechrnn.mic import Microphone

    with Microphone(device, block_seconds=block_seconds) as mic:
        yield from engine.run(mic)
