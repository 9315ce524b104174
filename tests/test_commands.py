"""Command lists: comments, blank lines, normalization and duplicates, and one sentence
naming the file and line for every list that cannot be used.
"""

from __future__ import annotations

import pytest

from speechrnn.commands import (
    CommandsError,
    load_commands,
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
