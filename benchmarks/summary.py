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


def table_row(md: Path, first_cell: str) -> list[str] | None:
    """Cells of the first table row of a results file that starts with `first_cell` (which
    may span cells: "torch | 1"); None when the file or the row is not there."""
    if not md.is_file():
        return None
    for line in md.read_text().splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if " | ".join(cells).startswith(first_cell.rstrip(" |")):
                return cells
    return None


def other_scripts_rows(results: Path) -> list[Row]:
    """Headline figures of the scripts the suite runs (transcribe, export, stream), read
    from their results files; a figure whose line is missing is left out."""
    rows = []
    t, tr = results / "transcribe.md", table_row
    one, two = tr(t, "1000 one-second clips, --jobs 1"), tr(t, "1000 one-second clips, --jobs 2")
    if one:
        rows.append(Row("`transcribe` 1,000 one-second clips, start-up included",
                        one[1] + (f" ({two[1]} with `--jobs 2`)" if two else ""), "< 20 s",
                        "transcribe.md"))
    hour = tr(t, "one 60-minute file")
    if hour:
        rows.append(Row("`transcribe` a one-hour file", f"{hour[1]}, {hour[4]}",
                        "< 40 s, < 300 MB", "transcribe.md"))
    e = results / "export.md"
    fp32, torch, int8 = (tr(e, name) for name in ("onnxruntime fp32 | 1 |", "torch | 1 |",
                                                    "onnxruntime int8 | 1 |"))
    if fp32:
        rows.append(Row("onnxruntime fp32, one thread, model alone",
                        f"{fp32[3]}× real time" + (f" (torch {torch[3]}×" if torch else "")
                        + (f", int8 {int8[3]}×)" if int8 else ")" if torch else ""),
                        "≥ 200×, faster than torch", "export.md"))
    st = results / "stream.md"
    idle, busy = tr(st, "silence"), tr(st, "continuous speech")
    memory = stream_line(st, r"^Peak resident memory of `speechrnn listen")
    if idle and busy:
        mb = re.search(r": (\d+ MB)", memory) if memory else None
        rows.append(Row("`listen` CPU: silence / continuous speech" + ("; memory" if mb else ""),
                        f"{idle[1]} / {busy[1]} of a core" + (f"; {mb.group(1)}" if mb else ""),
                        "≤ 5 %; ≤ 250 MB", "stream.md"))
    return rows
