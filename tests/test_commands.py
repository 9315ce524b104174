"""Command lists: comments, blank lines, normalization and duplicates, and one sentence
naming the file and line for every list that cannot be used.
"""

from __future__ import annotations

import numpy as np
import pytest

from speechrnn.commands import (
    CommandsError,
    load_command_list,
    load_commands,
    normalize_command_list,
    normalize_commands,
    parse_commands,
)


def test_file_with_comments_blank_lines_and_duplicates(tmp_path):
    path = tmp_path / "commands.txt"
    path.write_text("# my commands\n\nTurn ON the Light!\n  stop  # halt\nSTOP\nchannel 7\n"
                    "don't move\nwi-fi off\n", encoding="utf-8")
    assert load_commands(path) == ["turn on the light", "stop", "channel seven",
                                   "don't move", "wi fi off"]


def test_byte_order_mark_and_windows_line_ends(tmp_path):
    path = tmp_path / "commands.txt"
    path.write_bytes("\ufeffyes\r\nno\r\n".encode())
    assert load_commands(path) == ["yes", "no"]


@pytest.mark.parametrize("line,words", [("café", "'é'"), ("привет", "cannot spell"),
                                        ("!!!", "no words"), ("'", "no words")])
def test_bad_line_is_named(tmp_path, line, words):
    path = tmp_path / "commands.txt"
    path.write_text(f"yes\n# fine\n{line}\n", encoding="utf-8")
    with pytest.raises(CommandsError) as err:
        load_commands(path)
    message = str(err.value)
    assert f"{path} line 3" in message and words in message and "\n" not in message


def test_token_set_of_the_model_is_respected():
    tokens = ["<blank>", " ", *"abc"]
    assert parse_commands(["cab", "a b"], tokens) == ["cab", "a b"]
    with pytest.raises(CommandsError, match="line 2"):
        parse_commands(["cab", "dab"], tokens)


@pytest.mark.parametrize("case", ["missing", "folder", "binary", "only comments"])
def test_unusable_file(tmp_path, case):
    path = {"missing": tmp_path / "nope.txt", "folder": tmp_path}.get(case, tmp_path / "c.txt")
    if case == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif case == "only comments":
        path.write_text("# nothing yet\n\n", encoding="utf-8")
    with pytest.raises(CommandsError) as err:
        load_commands(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_unreadable_file(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "c.txt"
    path.write_text("yes\n")
    path.chmod(0)
    with pytest.raises(CommandsError, match="cannot be read"):
        load_commands(path)


def test_list_given_in_code():
    assert normalize_commands(["Yes", "yes", "Go 2"]) == ["yes", "go two"]
    with pytest.raises(CommandsError, match="empty"):
        normalize_commands([])


def test_a_command_may_carry_its_own_threshold(tmp_path):
    path = tmp_path / "commands.txt"
    path.write_text("yes\njarvis /0.05/  # my own word\nTurn on the light / 0.9 /\n"
                    "jarvis\n7 /1/\n")
    commands, thresholds = load_command_list(path)
    assert commands == ["yes", "jarvis", "turn on the light", "seven"]
    assert thresholds == {"jarvis": 0.05, "turn on the light": 0.9, "seven": 1.0}
    assert load_commands(path) == commands
    assert normalize_command_list(["No /0.2/", "stop"]) == (["no", "stop"], {"no": 0.2})


@pytest.mark.parametrize("line", ["jarvis /high/", "jarvis /1.5/", "jarvis /-0.1/",
                                  "jarvis //", "jarvis /nan/"])
def test_a_bad_threshold_is_named(tmp_path, line):
    path = tmp_path / "commands.txt"
    path.write_text(f"yes\n{line}\n")
    with pytest.raises(CommandsError, match=r"line 2: .*number from 0 to 1"):
        load_commands(path)


def test_one_command_cannot_have_two_thresholds():
    with pytest.raises(CommandsError, match="two thresholds, 0.1 and 0.2"):
        parse_commands(["stop /0.1/", "Stop! /0.2/"])


def test_the_recognizer_holds_each_command_to_its_own_threshold(tiny_model_path):
    from speechrnn.recognizer import Recognizer

    plain = Recognizer(tiny_model_path, ["yes", "no"], threshold=0.0, verify=False)
    rng = np.random.default_rng(0)
    log_probs = np.log(rng.dirichlet(np.ones(len(plain.info.tokens)), size=30))
    result = plain.decode(log_probs)
    best, confidence = result.candidate, result.confidence
    assert result.text == best and 0.0 < confidence < 1.0
    other = "no" if best == "yes" else "yes"
    above = min(1.0, confidence + 1e-6)
    # Its own threshold above the confidence rejects it, whatever the global one says...
    strict = Recognizer(plain.session, [f"{best} /{above!r}/", other], threshold=0.0,
                        verify=False)
    assert strict.thresholds == {best: above}
    assert strict.decode(log_probs).text == "" and strict.decode(log_probs).candidate == best
    # ... and one below accepts it under a global threshold that would reject it.
    lenient = Recognizer(plain.session, [f"{best} /0/", other], threshold=1.0, verify=False)
    assert lenient.decode(log_probs).text == best
    # Another command's threshold changes nothing for this one.
    assert Recognizer(plain.session, [best, f"{other} /0/"], threshold=1.0,
                      verify=False).decode(log_probs).text == ""
