"""The user's command list: words or phrases, one a line, normalized to the model's tokens.

A command may carry its own confidence threshold after it between slashes, as in
PocketSphinx keyword lists ("jarvis /0.05/"). A bad line raises CommandsError with one
sentence naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from speechrnn.text import TOKENS, normalize_text


class CommandsError(Exception):
    """A command list that cannot be used; the message is one sentence naming the problem."""


def normalize_command(raw: str, tokens: Sequence[str] = TOKENS, where: str = "command") -> str:
    """One command normalized like training text; raises CommandsError if it cannot be."""
    known = set(tokens)
    # Letters the model cannot spell would otherwise be dropped silently ("café" -> "caf").
    foreign = sorted({c for c in raw.lower() if c.isalpha() and c not in known})
    if foreign:
        raise CommandsError(f"{where} {raw.strip()!r} contains {''.join(foreign)!r}, which the "
                            "model cannot spell; write it with the letters a-z")
    text = normalize_text(raw)
    if not text:
        raise CommandsError(f"{where} {raw.strip()!r} has no words after normalization")
    missing = sorted(set(text) - known)
    if missing:
        raise CommandsError(f"{where} {raw.strip()!r} needs {''.join(missing)!r}, which is not "
                            "in the model's token set")
    return text


_OWN_THRESHOLD = re.compile(r"/([^/]*)/\s*$")


def split_threshold(raw: str, where: str = "command") -> tuple[str, float | None]:
    """A command's text and its own threshold, written after it between slashes
    ("jarvis /0.05/"); None where it has none."""
    found = _OWN_THRESHOLD.search(raw)
    if not found:
        return raw, None
    try:
        value = float(found.group(1))
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise CommandsError(f"{where} {raw.strip()!r}: the threshold between slashes must be "
                            "a number from 0 to 1")
    return raw[:found.start()], value


def _command_list(items: Iterable[tuple[str, str]],
                  tokens: Sequence[str]) -> tuple[list[str], dict[str, float]]:
    """Normalized commands of (text, where) items, duplicates removed, order kept, and
    the thresholds some of them carry."""
    commands: list[str] = []
    thresholds: dict[str, float] = {}
    for raw, where in items:
        raw, threshold = split_threshold(raw, where)
        text = normalize_command(raw, tokens, where=where)
        if threshold is not None:
            if thresholds.get(text, threshold) != threshold:
                raise CommandsError(f"{where} {text!r} is given two thresholds, "
                                    f"{thresholds[text]:g} and {threshold:g}")
            thresholds[text] = threshold
        if text not in commands:
            commands.append(text)
    return commands, thresholds


def parse_command_list(lines: Iterable[str], tokens: Sequence[str] = TOKENS,
                       source: str = "commands") -> tuple[list[str], dict[str, float]]:
    """Normalized commands of text lines ('#' comments and blank lines ignored,
    duplicates removed, order kept) and the thresholds some of them carry."""
    uncommented = ((number, line.split("#", 1)[0]) for number, line in enumerate(lines, 1))
    return _command_list(((raw, f"{source} line {number}:") for number, raw in uncommented
                          if raw.strip()), tokens)


def parse_commands(lines: Iterable[str], tokens: Sequence[str] = TOKENS,
                   source: str = "commands") -> list[str]:
    """Normalized commands of text lines, without their thresholds."""
    return parse_command_list(lines, tokens, source)[0]


def normalize_command_list(commands: Iterable[str], tokens: Sequence[str] = TOKENS
                           ) -> tuple[list[str], dict[str, float]]:
    """A list of commands given in code ("jarvis /0.05/" carries its own threshold),
    normalized and de-duplicated, and the thresholds some of them carry."""
    result = _command_list(((raw, "command") for raw in commands), tokens)
    if not result[0]:
        raise CommandsError("the command list is empty; give at least one command")
    return result


def normalize_commands(commands: Iterable[str], tokens: Sequence[str] = TOKENS) -> list[str]:
    """A list of commands given in code, normalized and de-duplicated."""
    return normalize_command_list(commands, tokens)[0]


def load_command_list(path: str | Path, tokens: Sequence[str] = TOKENS
                      ) -> tuple[list[str], dict[str, float]]:
    """Commands of a file, one a line, and the thresholds some of them carry."""
    path = Path(path)
    if not path.exists():
        raise CommandsError(f"commands file {path} does not exist")
    if path.is_dir():
        raise CommandsError(f"commands file {path} is a folder; give a text file, one "
                            "command a line")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise CommandsError(f"commands file {path} is not UTF-8 text; give a text file, one "
                            "command a line") from e
    except OSError as e:
        raise CommandsError(f"commands file {path} cannot be read ({e.strerror or e})") from e
    commands, thresholds = parse_command_list(text.splitlines(), tokens, source=str(path))
    if not commands:
        raise CommandsError(f"commands file {path} holds no commands; write one per line")
    return commands, thresholds


def load_commands(path: str | Path, tokens: Sequence[str] = TOKENS) -> list[str]:
    """Commands of a file, one a line, without their thresholds."""
    return load_command_list(path, tokens)[0]
