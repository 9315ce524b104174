"""Sound-alikes of the commands: the rule, espeak-ng's phonemes, and the committed list."""

from __future__ import annotations

import shutil

import pytest

from speechrnn.decoding import edit_distance
from training import confusables as conf
from training.synth import VOCAB_DIR, read_list

needs_espeak = pytest.mark.skipif(not shutil.which("espeak-ng"), reason="needs espeak-ng")

SOUNDS = {"bed": ("b", "E", "d"), "bad": ("b", "a", "d"), "bread": ("b", "r", "E", "d"),
          "go": ("g", "oU"), "goes": ("g", "oU", "z"), "house": ("h", "aU", "s"),
          "turn": ("t", "3:", "n"), "ten": ("t", "E", "n"), "on": ("O2", "n")}


def test_words_one_phoneme_from_a_command_word_are_listed():
    found = conf.confusables(["bed", "go", "turn on"], ["house", "bread", "bad", "goes", "ten",
                                                        "bed", "turn"],
                             phonemes=SOUNDS.__getitem__)
    # "turn" is a word of a command; "ten" is one phoneme from "turn", which is only part of
    # a phrase; "house" is far from everything; commands are never their own sound-alikes.
    assert found == ["bad", "bread", "goes"]
    assert conf.confusables(["bed"], ["bad", "bread"], max_distance=0,
                            phonemes=SOUNDS.__getitem__) == []


def test_words_of_excluded_phrases_are_left_out():
    assert conf.confusables(["bed"], ["bad", "bread"], exclude=["bad weather"],
                            phonemes=SOUNDS.__getitem__) == ["bread"]


@needs_espeak
def test_espeak_phonemes_tell_near_from_far():
    bed, bad, house = (conf.espeak_phonemes(w) for w in ("bed", "bad", "house"))
    assert edit_distance(bed, bad) == 1 and edit_distance(bed, house) >= 2
    assert conf.confusables(["bed"], ["house", "bad", "bed"]) == ["bad"]


@needs_espeak
def test_committed_list_is_what_the_tool_makes(tmp_path):
    out = tmp_path / "confusables.txt"
    assert conf.main(["--out", str(out)]) == 0  # about 3,000 espeak-ng runs: 10-20 s
    assert out.read_text() == conf.OUT.read_text()
    listed = set(read_list(out))
    assert {"bad", "town", "top"} <= listed
    assert listed <= set(read_list(VOCAB_DIR / "words.txt"))
    assert not listed & set(read_list(VOCAB_DIR / "speech_commands.txt"))


def test_cli_needs_espeak(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(conf.shutil, "which", lambda name: None)
    assert conf.main(["--out", str(tmp_path / "x.txt")]) == 1
    assert "espeak-ng is not installed" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()
