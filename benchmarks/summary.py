"""The suite's summary: one table of headline figures, written to
benchmarks/results/summary.md and into the README between two marker comments."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

START = "<!-- benchmarks:start -->"
END = "<!-- benchmarks:end -->"


class ReadmeError(Exception):
    """The README lacks the markers (or has them out of order)."""


@dataclass
class Row:
    what: str
    figure: str
    goal: str = ""
    source: str = ""  # results file the figure comes from


def table(rows: list[Row], header: str, link_prefix: str = "benchmarks/results/") -> str:
    """Markdown: a header paragraph, then | what | figure | goal | from |; links to the
    results files start with `link_prefix` (relative to where the table is written)."""
    lines = [header, "", "| what | figure | goal | from |", "|---|---|---|---|"]
    for r in rows:
        source = f"[`{r.source}`]({link_prefix}{r.source})" if r.source else ""
        lines.append(f"| {r.what} | {r.figure} | {r.goal} | {source} |")
    return "\n".join(lines) + "\n"


def replace_between_markers(text: str, body: str) -> str:
    """`text` with everything between START and END replaced by `body`."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start:
        raise ReadmeError(f"the README needs the lines {START} and {END} (in that order) "
                          "around the benchmark table")
    return text[:start + len(START)] + "\n" + body.strip("\n") + "\n" + text[end:]


def update_readme(path: Path, body: str) -> None:
    path.write_text(replace_between_markers(path.read_text(), body))


def stream_latency(stream_md: Path) -> tuple[str, str] | None:
    """(p50, p95) of right commands from bench_stream's results, if it has them."""
    if not stream_md.is_file():
        return None
    for line in stream_md.read_text().splitlines():
        if line.startswith("| `command`, right |"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            return cells[2], cells[3]
    return None


def stream_line(stream_md: Path, pattern: str) -> str | None:
    """First line of bench_stream's results matching a regular expression."""
    if not stream_md.is_file():
        return None
    for line in stream_md.read_text().splitlines():
        if re.search(pattern, line):
            return line
    return None
