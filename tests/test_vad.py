"""Voice activity detection: synthetic speech-like bursts found where they are, and
steady noise, DC offset and silence never taken for speech."""

from __future__ import annotations

import numpy as np
import pytest

from speechrnn.vad import Segmenter, VadConfig, segments, split
from tests.signals import SR, silence, white, word


def sequence(*parts: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Concatenated parts, and the (start, end) seconds of every part that is a word."""
    audio, spans, at = [], [], 0
    for i, part in enumerate(parts):
        if i % 2 == 1:
            spans.append((at / SR, (at + len(part)) / SR))
        audio.append(part)
        at += len(part)
    return np.concatenate(audio), spans


def blocks_of(audio: np.ndarray, size: int):
    return [audio[i:i + size] for i in range(0, len(audio), size)]


def test_words_found_where_they_are():
    audio, spans = sequence(silence(1.0), word(0.6), silence(0.8), word(0.9, 200, -25),
                            silence(0.6), word(0.4, 110, -30), silence(1.0))
    found = split(audio)
    assert len(found) == 3
    for seg, (start, end) in zip(found, spans, strict=True):
        assert abs(seg.start_time - start) < 0.05
        assert abs(seg.end_time - end) < 0.08
        assert seg.offset <= seg.start < seg.end
        assert seg.offset == max(0, seg.start - int(0.2 * SR))
        assert len(seg.audio) == (seg.end + int(0.1 * SR)) - seg.offset
        np.testing.assert_array_equal(seg.audio, audio[seg.offset:seg.offset + len(seg.audio)])


def test_block_size_does_not_matter():
    audio, _ = sequence(silence(0.5), word(0.7), silence(0.5), word(0.5, 180), silence(0.4))
    reference = [(s.start, s.end, s.offset, len(s.audio)) for s in split(audio)]
    assert len(reference) == 2
    for size in (1, 77, 160, 161, 1000, 4099, len(audio)):
        got = [(s.start, s.end, s.offset, len(s.audio)) for s in segments(blocks_of(audio, size))]
        assert got == reference, size


@pytest.mark.parametrize("background", [
    silence(6.0),
    white(6.0, -30.0),
    white(6.0, -60.0),
    np.full(int(6.0 * SR), 0.4, np.float32) + white(6.0, -50.0),  # DC offset
    np.concatenate([silence(2.0), np.full(int(4.0 * SR), -0.3, np.float32)]),  # DC step
    (0.2 * np.sin(2 * np.pi * 50 * np.arange(6 * SR) / SR)).astype(np.float32),  # hum
], ids=["silence", "noise-30dB", "noise-60dB", "dc-offset", "dc-step", "hum"])
def test_steady_backgrounds_are_not_speech(background):
    assert split(background) == []


@pytest.mark.parametrize("noise_db", [-45.0, -35.0])
def test_speech_over_noise_and_dc(noise_db):
    noise = white(6.0, noise_db, seed=3) + 0.25
    speech, spans = sequence(silence(2.5), word(0.8, level_db=-18), silence(2.7))
    found = split(noise + speech)
    assert len(found) == 1
    assert abs(found[0].start_time - spans[0][0]) < 0.1
    assert abs(found[0].end_time - spans[0][1]) < 0.15


def test_noise_level_change_adapts():
    # Noise jumps 25 dB: at most one short false segment while the floor catches up,
    # then a word well above the new noise is found.
    audio = np.concatenate([white(2.0, -60.0), white(6.0, -35.0, seed=4)])
    audio[int(6.0 * SR):int(6.8 * SR)] += word(0.8, level_db=-15)
    found = split(audio)
    assert 1 <= len(found) <= 2
    assert abs(found[-1].start_time - 6.0) < 0.1


def test_speech_at_the_very_start_is_found():
    audio, _ = sequence(silence(0), word(0.8, level_db=-15), silence(1.0))
    found = split(audio)
    assert len(found) == 1 and found[0].start_time < 0.15


def test_short_click_is_ignored():
    audio = silence(3.0)
    audio[SR:SR + 400] = word(0.025, level_db=-10)
    assert split(audio) == []


def test_short_pause_inside_a_phrase_does_not_split():
    audio, _ = sequence(silence(1.0), word(0.5), silence(0.15), word(0.5, 180), silence(1.0))
    assert len(split(audio)) == 1
    assert len(split(audio, hangover=0.12, post_roll=0.05)) == 2


def test_long_speech_is_cut_at_max_segment():
    long = np.concatenate([word(0.5, 130 + 10 * i, seed=i) for i in range(12)])
    found = split(np.concatenate([silence(0.5), long, silence(1.0)]), max_segment=2.0)
    assert len(found) >= 3
    assert all(s.duration <= 2.0 + 1e-9 for s in found)
    for a, b in zip(found, found[1:], strict=False):
        assert a.end <= b.start


def test_flush_ends_open_segment():
    audio, _ = sequence(silence(1.0), word(1.0))
    found = split(audio)
    assert len(found) == 1
    assert found[0].offset + len(found[0].audio) == len(audio)


def test_streaming_state():
    vad = Segmenter()
    assert vad.push(silence(1.0)) == [] and not vad.active
    vad.push(word(0.5))
    assert vad.active and vad.confirmed
    assert abs(vad.speech_start / SR - 1.0) < 0.05
    vad.push(silence(0.15))
    assert vad.active and 0.1 <= vad.trailing_silence <= 0.2
    snap = vad.snapshot()
    assert snap.start == vad.speech_start and snap.end == vad.speech_end
    assert len(vad.current_audio()) >= len(snap.audio)
    cut = vad.cut()
    assert cut is not None and not vad.active
    assert vad.push(silence(1.0)) == []


def test_config_checks():
    with pytest.raises(TypeError, match="unknown VAD setting"):
        VadConfig.from_params(hangoverr=1)
    with pytest.raises(ValueError):
        VadConfig(post_roll=0.5, hangover=0.2)
    with pytest.raises(ValueError, match="1-D"):
        Segmenter().push(np.zeros((10, 2), np.float32))


def test_accepts_float64_and_column_blocks():
    audio, _ = sequence(silence(1.0), word(0.6), silence(1.0))
    assert len(list(segments([audio.astype(np.float64)[:, None]]))) == 1


OLD_RELEASE = dict(end_db=-200.0, peak_drop_db=200.0)  # only the floor ends a segment


def test_background_rising_just_before_a_word_does_not_hold_it_open():
    # A fan turns on half a second before the word, 8 dB up: too little for an onset, and
    # the running floor takes about two seconds to follow.
    audio = np.concatenate([white(2.5, -50.0, seed=3), white(4.0, -42.0, seed=4)])
    audio[3 * SR:int(3.6 * SR)] += word(0.6, level_db=-20.0)
    found = split(audio)
    assert len(found) == 1 and abs(found[0].end_time - 3.6) < 0.1
    assert split(audio, **OLD_RELEASE)[0].end_time > 4.0


def test_a_tail_far_below_the_word_ends_it():
    decay = (10 ** (-2.0 * np.arange(SR) / SR)).astype(np.float32)
    tail = white(1.0, -28.0, seed=5) * decay  # reverberation: 40 dB a second
    audio = np.concatenate([silence(1.0), word(0.6, level_db=-20.0), tail, silence(1.0)])
    audio += white(len(audio) / SR, -60.0, seed=6)
    found = split(audio)
    assert len(found) == 1 and found[0].end_time < 2.25
    assert split(audio, **OLD_RELEASE)[0].end_time > found[0].end_time + 0.1


def test_frames_yield_after_every_frame():
    audio = np.concatenate([silence(1.0), word(0.5), silence(1.0)])
    vad = Segmenter()
    steps = list(vad.frames(audio[:12345]))
    assert len(steps) == 12345 // 160 and vad.position == len(steps) * 160
    done = [s for s in steps + list(vad.frames(audio[12345:])) + vad.flush() if s]
    assert [(s.start, s.end) for s in done] == [(s.start, s.end) for s in split(audio)]


@pytest.mark.parametrize("snr_db", [10.0, 14.0, 30.0])
def test_quiet_and_loud_words_keep_their_length(snr_db):
    audio = white(4.0, -50.0, seed=3)
    audio[2 * SR:int(2.6 * SR)] += word(0.6, level_db=-50.0 + snr_db)
    found = split(audio)
    assert len(found) == 1
    assert abs(found[0].start_time - 2.0) < 0.1 and abs(found[0].end_time - 2.6) < 0.05
