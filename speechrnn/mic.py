"""Microphone input: capture with sounddevice at the device's native rate, resample to
16 kHz mono float32, and yield blocks with their arrival times.

sounddevice (and PortAudio) is imported only when a device is used, so the rest of the
package works on machines without audio hardware. Problems end in MicError: one sentence,
with `exit_code` 2 for a device that cannot be opened and 1 for one lost mid-stream.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from speechrnn.audio import SAMPLE_RATE, declip

HINT = "run `speechrnn devices` to see the input devices"
FIRST_BLOCK_SECONDS = 5.0  # Bluetooth or USB devices waking up can take this long to start


class MicError(Exception):
    """A microphone problem, in one sentence for the user."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def _sounddevice():
    """The sounddevice module; a separate function so tests can put a fake in its place."""
    try:
        import sounddevice
    except OSError as e:  # raised when the PortAudio library itself is missing
        raise MicError("the PortAudio library is not installed, so no microphone can be "
                       "used; install it (Debian/Ubuntu: apt install libportaudio2)") from e
    return sounddevice


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    sample_rate: int  # native (default) rate
    channels: int  # input channels
    hostapi: str
    is_default: bool


def list_devices() -> list[InputDevice]:
    """Every device that can record, in PortAudio's order."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
    except sd.PortAudioError as e:
        raise MicError(f"cannot list audio devices ({e})") from e
    default = _default_input(sd)
    result = []
    for d in devices:
        if d["max_input_channels"] <= 0:
            continue
        index = int(d["index"])
        result.append(InputDevice(index, str(d["name"]), int(round(d["default_samplerate"])),
                                  int(d["max_input_channels"]),
                                  str(hostapis[d["hostapi"]]["name"]), index == default))
    return result


def _default_input(sd) -> int:
    try:
        value = sd.default.device[0]
    except (AttributeError, IndexError, TypeError):
        return -1
    return -1 if value is None else int(value)


def find_device(device: int | str | None = None) -> InputDevice:
    """An input device by index, by name (exact, else a unique part of it) or the default."""
    devices = list_devices()
    if not devices:
        raise MicError("no audio input device found; connect a microphone, or check that "
                       "the audio system (ALSA, PulseAudio) is running")
    if device is None:
        return next((d for d in devices if d.is_default), devices[0])
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    if isinstance(device, int):
        for d in devices:
            if d.index == device:
                return d
        raise MicError(f"there is no input device with index {device}; {HINT}")
    wanted = device.strip().lower()
    exact = [d for d in devices if d.name.lower() == wanted]
    matches = exact or [d for d in devices if wanted in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise MicError(f"there is no input device named {device!r}; {HINT}")
    names = ", ".join(f"{d.index} {d.name!r}" for d in matches)
    raise MicError(f"the device name {device!r} matches several input devices ({names}); "
                   "give its index instead")


class Microphone:
    """A live input stream; use as a context manager and iterate for (block, arrival).

    Blocks are 16 kHz mono float32 of about `block_seconds`; arrival is time.monotonic()
    when PortAudio delivered the audio. Overflows (PortAudio's, or blocks dropped because
    the reader fell `max_queue_seconds` behind) are counted in `overflows`, not fatal.
    A device that stops delivering audio for `stall_seconds` raises MicError (exit 1).
    """

    def __init__(self, device: int | str | None = None, block_seconds: float = 0.05,
                 max_queue_seconds: float = 10.0, stall_seconds: float = 2.0):
        self.requested = device
        self.block_seconds = block_seconds
        self.max_queue_seconds = max_queue_seconds
        self.stall_seconds = max(stall_seconds, 4 * block_seconds)
        self.device: InputDevice | None = None
        self.overflows = 0
        self.frames = 0  # native-rate frames received
        self._stream = None
        self._queue: queue.Queue = queue.Queue()
        self._finished = threading.Event()
        self._channels = 1

    @property
    def seconds(self) -> float:
        """Audio received so far, in seconds."""
        rate = self.device.sample_rate if self.device else SAMPLE_RATE
        return self.frames / rate

    def __enter__(self) -> Microphone:
        try:
            self._open()
        except BaseException:
            # Ctrl-C or a failure half-way through opening must not leave a stream behind.
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> None:
        sd = _sounddevice()
        device = self.device = find_device(self.requested)
        rate = device.sample_rate
        self._channels = self._pick_channels(sd, device)
        blocks = max(1, int(self.max_queue_seconds / self.block_seconds))
        self._queue = queue.Queue(maxsize=blocks)
        try:
            self._stream = sd.InputStream(
                device=device.index, samplerate=rate, channels=self._channels,
                dtype="float32", blocksize=max(1, int(round(rate * self.block_seconds))),
                callback=self._callback, finished_callback=self._finished.set)
            self._stream.start()
        except sd.PortAudioError as e:
            raise MicError(f"cannot open input device {device.index} {device.name!r} at "
                           f"{rate} Hz ({_reason(e)}); is it in use or unplugged? {HINT}"
                           ) from e
        self._resampler = None
        if rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32",
                                                  quality="HQ")

    def _pick_channels(self, sd, device: InputDevice) -> int:
        """Mono if the device records mono, else the fewest channels it takes (downmixed)."""
        last = None
        for channels in sorted({1, min(2, device.channels), device.channels}):
            try:
                sd.check_input_settings(device=device.index, channels=channels,
                                        dtype="float32", samplerate=device.sample_rate)
                return channels
            except (sd.PortAudioError, ValueError) as e:
                last = e
        raise MicError(f"input device {device.index} {device.name!r} refuses to record at "
                       f"its own rate of {device.sample_rate} Hz ({_reason(last)}); choose "
                       f"another device. {HINT}")

    def _callback(self, indata, frames, time_info, status) -> None:
        # PortAudio's thread: copy and hand over, nothing slow here.
        if status.input_overflow:
            self.overflows += 1
        try:
            self._queue.put_nowait((indata.copy(), time.monotonic()))
        except queue.Full:
            self.overflows += 1

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        if self._stream is None:
            raise RuntimeError("use the Microphone in a `with` block")
        last = time.monotonic()
        patience = max(self.stall_seconds, FIRST_BLOCK_SECONDS)
        while True:
            try:
                data, arrival = self._queue.get(timeout=0.1)
            except queue.Empty:
                stopped = self._finished.is_set() or not self._stream.active
                if stopped or time.monotonic() - last > patience:
                    raise MicError(self._lost_message(stopped), exit_code=1) from None
                continue
            last = time.monotonic()
            patience = self.stall_seconds
            self.frames += len(data)
            mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
            mono = np.ascontiguousarray(mono, dtype=np.float32)
            if self._resampler is not None:  # clipped peaks rebuilt before they blur
                mono = self._resampler.resample_chunk(declip(mono))
            if len(mono):
                yield mono, arrival

    def _lost_message(self, stopped: bool) -> str:
        d = self.device
        what = "stopped" if stopped else f"sent no audio for {self.stall_seconds:g} s"
        return (f"input device {d.index} {d.name!r} {what} after {self.seconds:.1f} s of "
                "recording; it was probably unplugged or taken by another program")

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.abort()
        except Exception:  # a vanished device may fail to stop; closing is what matters
            pass
        try:
            stream.close()
        except Exception:
            pass


def _reason(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    text = str(error.args[0] if getattr(error, "args", None) else error)
    return text.rstrip(".") or type(error).__name__
