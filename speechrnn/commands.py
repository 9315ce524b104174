"""The user's command list: words or phrases, one a line, normalized to the model's tokens.

A bad line raises CommandsError with one sentence naming the file and line.
"""

from __future__ import annotations

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


def parse_commands(lines: Iterable[str], tokens: Sequence[str] = TOKENS,
                   source: str = "commands") -> list[str]:
    """Normalized commands of text lines; '#' comments and blank lines ignored, duplicates
    removed, order kept."""
    commands: list[str] = []
    for number, line in enumerate(lines, 1):
        raw = line.split("#", 1)[0]
        if not raw.strip():
            continue
        text = normalize_command(raw, tokens, where=f"{source} line {number}:")
        if text not in commands:
            commands.append(text)
    return commands


def normalize_commands(commands: Iterable[str], tokens: Sequence[str] = TOKENS) -> list[str]:
    """A list of commands given in code, normalized and de-duplicated."""
    result: list[str] = []
    for raw in commands:
        text = normalize_command(raw, tokens)
        if text not in result:
            result.append(text)
    if not result:
        raise CommandsError("the command list is empty; give at least one command")
    return result


def load_commands(path: str | Path, tokens: Sequence[str] = TOKENS) -> list[str]:
    """Commands of a file, one a line."""
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
    commands = parse_commands(text.splitlines(), tokens, source=str(path))
    if not commands:
        raise CommandsError(f"commands file {path} holds no commands; write one per line")
    return commands
