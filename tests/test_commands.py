"""Command lists: comments, blank lines, normalization and duplicates, and one sentence
naming the file and line for every list that cannot be used.
"""

from __future__ import annotations

import pytest

from speechrnn.commands import (
    HOMOPHONES_FILE,
    MAX_SPELLINGS,
    CommandsError,
    homophones,
    load_commands,
    normalize_command,
    normalize_commands,
    parse_commands,
    spellings,
)
from speechrnn.text import TOKENS


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


# -- spellings: words that sound the same ----------------------------------------------

def test_spellings_swap_words_for_those_that_sound_the_same():
    assert spellings("two") == ["two", "to", "too"]
    assert spellings("stop") == ["stop"]
    assert spellings("turn right") == ["turn right", "turn rite", "turn write"]
    # Another command is never a spelling of this one.
    assert spellings("two", commands=["two", "to"]) == ["two", "too"]
    # Spellings the model cannot write are left out.
    assert "it's" in spellings("its")
    assert spellings("its", tokens=[t for t in TOKENS if t != "'"]) == ["its"]


def test_spellings_of_a_long_phrase_are_capped():
    found = spellings("two four two four two four")
    assert len(found) == MAX_SPELLINGS and found[0] == "two four two four two four"
    assert len(set(found)) == len(found)


def test_the_homophone_table_is_well_formed():
    seen = set()
    for line in HOMOPHONES_FILE.read_text().splitlines():
        group = line.split("#", 1)[0].split()
        if not group:
            continue
        assert len(group) >= 2, line
        for word in group:
            assert normalize_command(word) == word, line
            assert word not in seen, f"{word} is in two groups"
            seen.add(word)
    assert homophones()["four"] == ("for", "fore")
