"""False alarms: an hour of audio holding no command, and the misses they trade against.

    python benchmarks/bench_false_alarms.py [--quick] [--minutes 60] [--no-peer]

The hour is long-form speech of other words (held-out synthetic voices saying words that
are not commands, and the held-out real clips of words that are not commands or no word),
synthesized music and noise (hum, typing, cafe), over a faint steady background. It is
cut into speech segments and decoded as `speechrnn transcribe` does a long file, once;
each segment's best command and confidence are stored, and every threshold is decided
from them: false accepts per hour. False rejects come from the clean command clips of
held-out voices (the accuracy benchmark's sets). Writes benchmarks/results/
false_alarms.md and false_alarms.png.
"""

from __future__ import annotations

import argparse
import bisect
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import conditions as cond  # noqa: E402
from benchmarks import testsets  # noqa: E402
from benchmarks.common import machine  # noqa: E402
from benchmarks.scoring import (  # noqa: E402
    THRESHOLDS,
    Verdict,
    false_accepts_per_hour,
    false_reject_rate,
    long_form_segments,
    pct,
    recommended_threshold,
    speechrnn_verdict,
    sweep,
)
from benchmarks.stats import poisson_interval, wilson_interval  # noqa: E402
from speechrnn.audio import SAMPLE_RATE  # noqa: E402
from speechrnn.recognizer import DEFAULT_THRESHOLD, Recognizer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
GOAL_FA, GOAL_FR = 1.0, 0.05
FR_SETS = ("synthetic", "real-speaker")  # sets scored with the model's own command list


@dataclass
class Hour:
    """What went into the command-free audio, in seconds by kind."""

    seconds: dict[str, float] = field(default_factory=Counter)
    clips: Counter = field(default_factory=Counter)
    spans: list[tuple[float, str]] = field(default_factory=list)  # (start s, kind), in order

    def kind_at(self, t: float) -> str:
        """The kind of audio playing at second `t`."""
        i = bisect.bisect_right([start for start, _ in self.spans], t) - 1
        return self.spans[max(i, 0)][1] if self.spans else "?"


def speech_only(audio: np.ndarray) -> np.ndarray:
    from benchmarks.bench_transcribe import speech_part

    return speech_part(audio, margin=0.1)


def command_free_audio(pools: dict[str, list[testsets.Clip]], seconds: float, voices: list,
                       hour: Hour, seed: int = 0, block: float = 10.0) -> Iterator[np.ndarray]:
    """Blocks of command-free audio, `seconds` long: runs of words from the pools (about
    60 %), music (20 %) and noise (20 %) in a shuffled order, over a faint background."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    queues = {name: rng.sample(clips, len(clips)) for name, clips in pools.items() if clips}
    noise_kinds = [k for k in ("hum", "keyboard", "cafe") if k != "cafe" or voices]
    written = 0  # samples
    total = int(seconds * SAMPLE_RATE)
    piece_no = 0
    buffer: list[np.ndarray] = []
    buffered = 0
    step = int(block * SAMPLE_RATE)
    while written < total:
        roll = rng.random()
        if queues and roll < 0.6:
            name = rng.choice(sorted(queues))
            parts = []
            gain = 10 ** (rng.uniform(-30, -16) / 20)
            for _ in range(rng.randint(5, 15)):
                if not queues[name]:  # a pool used up starts again, in a new order
                    queues[name] = rng.sample(pools[name], len(pools[name]))
                clip = queues[name].pop()
                audio = speech_only(clip.audio())
                audio = audio / (np.sqrt(np.mean(audio ** 2)) + 1e-9) * gain
                parts += [audio, np.zeros(int(rng.uniform(0.15, 1.0) * SAMPLE_RATE))]
                hour.clips[name] += 1
            piece = np.concatenate(parts)
            kind = name
        elif roll < 0.8 or not noise_kinds:
            piece = cond.make_noise("music", int(rng.uniform(20, 60) * SAMPLE_RATE),
                                    seed=1000 + piece_no) * 10 ** (rng.uniform(-32, -20) / 20)
            kind = "music"
        else:
            kind = rng.choice(noise_kinds)
            piece = cond.make_noise(kind, int(rng.uniform(15, 40) * SAMPLE_RATE),
                                    seed=2000 + piece_no, voices=voices) * 10 ** (
                rng.uniform(-35, -22) / 20)
            kind = f"noise: {kind}"
        piece_no += 1
        piece = piece[: total - written]
        hour.spans.append((written / SAMPLE_RATE, kind))
        hour.seconds[kind] += len(piece) / SAMPLE_RATE
        written += len(piece)
        buffer.append(piece)
        buffered += len(piece)
        while buffered >= step or (written >= total and buffered):
            joined = np.concatenate(buffer)
            out, rest = joined[:step], joined[step:]
            buffer, buffered = ([rest], len(rest)) if len(rest) else ([], 0)
            background = nrng.standard_normal(len(out)) * 10 ** (-62 / 20)
            yield np.clip(out + background, -1, 1).astype(np.float32)


def clean_verdicts(sets: list[testsets.TestSet], recognizer: Recognizer,
                   peer_cls=None) -> dict[str, list[tuple[str, Verdict, Verdict | None]]]:
    """(expected, speechrnn verdict, peer verdict) of each clean clip of each set."""
    out = {}
    for s in sets:
        ours = Recognizer(recognizer.session, s.commands, threshold=0.0)
        peer = peer_cls(s.commands) if peer_cls else None
        rows = []
        for clip in tqdm(s.clips, desc=f"{s.name} clean", disable=None):
            audio = clip.audio()
            rows.append((clip.expected, speechrnn_verdict(ours, audio),
                         peer.verdict(audio) if peer else None))
        out[s.name] = rows
    return out


def matched_threshold(clean: dict) -> float:
    """The peer's threshold that rejects as many clean command-free clips as speechrnn
    does at its default (as bench_accuracy chooses it)."""
    rows = [x for rows in clean.values() for x in rows if not x[0] and x[2] is not None]
    if not rows:
        return 0.0
    target = sum(not x[1].text(DEFAULT_THRESHOLD) for x in rows)
    for t in [i / 100 for i in range(100)]:
        if sum(not x[2].text(t) for x in rows) >= target:
            return t
    return 0.99


@dataclass
class FalseAlarmRun:
    hours: float
    hour: Hour
    segments: list  # StreamSegment of speechrnn
    peer_confidences: list[float] | None
    clean: dict  # set name -> [(expected, ours, peer)]
    peer_threshold: float
    seconds: float


def run(recognizer: Recognizer, sets: list[testsets.TestSet], pools, voices, minutes: float,
        clean: dict | None = None, use_peer: bool = True,
        peer_threshold: float = 0.0) -> FalseAlarmRun:
    start = time.perf_counter()
    peer_cls = None
    if use_peer:
        try:
            from benchmarks.peer import PocketSphinx

            PocketSphinx(recognizer.commands)
            peer_cls = PocketSphinx
        except Exception as e:  # not installed: the report says so
            testsets.skip("PocketSphinx on the hour", str(e))
    fr_sets = [s for s in sets if s.name in FR_SETS]
    if clean is None:
        clean = clean_verdicts(fr_sets, recognizer, peer_cls)
    if peer_cls and not peer_threshold:
        peer_threshold = matched_threshold(clean)
    hour = Hour()
    ours = Recognizer(recognizer.session)  # the default threshold, as users run it
    blocks = command_free_audio(pools, minutes * 60, voices, hour)
    bar = tqdm(total=int(minutes * 6), desc="command-free audio", unit="10 s", disable=None)

    def counted(it):
        for b in it:
            bar.update(1)
            yield b

    peer = peer_cls(ours.commands) if peer_cls else None
    peer_conf: list[float] | None = [] if peer else None

    def peer_decodes(audio):  # the peer decodes the very pieces speechrnn decodes
        v = peer.verdict(audio)
        peer_conf.append(v.confidence if v.best else 0.0)

    segments = long_form_segments(ours, counted(blocks), on_piece=peer_decodes if peer else None)
    bar.close()
    return FalseAlarmRun(sum(hour.seconds.values()) / 3600, hour, segments, peer_conf, clean,
                         peer_threshold, time.perf_counter() - start)


def curves(r: FalseAlarmRun) -> dict[str, list[dict]]:
    """FR/FA curves: per set and pooled, for speechrnn and (if run) the peer."""
    out = {}
    confs = [s.confidence for s in r.segments]
    pooled_e, pooled_v, pooled_p = [], [], []
    for name, rows in r.clean.items():
        e = [x[0] for x in rows]
        out[f"speechrnn, {name}"] = sweep(e, [x[1] for x in rows], confs, r.hours)
        pooled_e += e
        pooled_v += [x[1] for x in rows]
        pooled_p += [x[2] for x in rows]
    out["speechrnn, held-out voices"] = sweep(pooled_e, pooled_v, confs, r.hours)
    if r.peer_confidences is not None and all(p is not None for p in pooled_p):
        out["PocketSphinx, held-out voices"] = sweep(pooled_e, pooled_p, r.peer_confidences,
                                                     r.hours)
    return out


def plot(curve_sets: dict[str, list[dict]], marks: dict[str, float], path: Path,
         title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, curve in curve_sets.items():
        xs = [p["fa_per_hour"] for p in curve]
        ys = [100 * p["fr"] for p in curve]
        line, = ax.plot(xs, ys, marker=".", label=name)
        for label, t in marks.items():
            if name.startswith("PocketSphinx") != label.startswith("PocketSphinx"):
                continue
            p = min(curve, key=lambda q: abs(q["threshold"] - t))
            ax.annotate(f"{label.split(': ')[-1]} {t:g}", (p["fa_per_hour"], 100 * p["fr"]),
                        textcoords="offset points", xytext=(5, 5), fontsize=7,
                        color=line.get_color())
            ax.plot([p["fa_per_hour"]], [100 * p["fr"]], "o", color=line.get_color())
    ax.axvline(GOAL_FA, color="grey", ls="--", lw=0.8)
    ax.axhline(100 * GOAL_FR, color="grey", ls="--", lw=0.8)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel("false accepts per hour of command-free audio")
    ax.set_ylabel("false rejects, % of command clips")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def summary(r: FalseAlarmRun) -> dict:
    c = curves(r)
    pooled = c["speechrnn, held-out voices"]
    rec = recommended_threshold(pooled, GOAL_FA)
    at = min(pooled, key=lambda p: abs(p["threshold"] - DEFAULT_THRESHOLD))
    fewest = min(pooled, key=lambda p: (p["fa_per_hour"], p["fr"]))
    accepted = sum(x.confidence >= DEFAULT_THRESHOLD for x in r.segments)
    commands = sum(1 for rows in r.clean.values() for x in rows if x[0])
    return {"hours": r.hours, "fa_per_hour": at["fa_per_hour"], "fr": at["fr"],
            "false_accepts": accepted, "fa_interval": poisson_interval(accepted, r.hours),
            "commands": commands,
            "fr_interval": wilson_interval(round(at["fr"] * commands), commands),
            "recommended": rec, "fewest": fewest, "curves": c}


def report(r: FalseAlarmRun, command: str, png: Path) -> str:
    s = summary(r)
    c = s["curves"]
    rec = s["recommended"]
    confs = [x.confidence for x in r.segments]
    fired = Counter(x.best for x in r.segments if x.confidence >= DEFAULT_THRESHOLD)
    lines = [
        "# False alarms: false accepts per hour against false rejects",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine()}, by `{command}` in "
        f"{r.seconds / 60:.1f} min.",
        "",
        f"## The command-free audio ({r.hours * 60:.1f} minutes)",
        "",
        "Long-form speech of words that are not commands (runs of 5-15 words, 0.15-1 s "
        "apart, each run at its own level), synthesized music and noise, in shuffled order "
        "over a faint steady background (-62 dB). Decoded as `speechrnn transcribe` "
        "and `listen` decode it (the stream engine at the default threshold), against the "
        f"model's {len(Recognizer(threshold=0.0).commands)} commands: {len(r.segments)} "
        "segments decided (accepted or rejected). Rates at thresholds above the default "
        "come from the accepted segments' confidences, below it from the rejected ones' "
        "(the engine might have cut those a little differently).",
        "",
        "| part | minutes | clips | false accepts at the default threshold | per hour of it |",
        "|---|---:|---:|---:|---:|",
    ]
    by_kind = Counter(r.hour.kind_at((x.start + x.end) / 2) for x in r.segments
                      if x.confidence >= DEFAULT_THRESHOLD)
    for kind, secs in sorted(r.hour.seconds.items()):
        lines.append(f"| {kind} | {secs / 60:.1f} | {r.hour.clips.get(kind, '–')} | "
                     f"{by_kind[kind]} | {by_kind[kind] / (secs / 3600):.0f} |")
    fr_parts = ", ".join(f"{name} {pct(false_reject_rate([x[0] for x in rows], [x[1] for x in rows], DEFAULT_THRESHOLD))}"  # noqa: E501
                         for name, rows in r.clean.items())
    fa_low, fa_high = s["fa_interval"]
    fr_low, fr_high = s["fr_interval"]
    lines += [
        "",
        f"## At the default threshold ({DEFAULT_THRESHOLD})",
        "",
        "95 % intervals count only the sampling of clips and events (exact Poisson for "
        "false accepts, Wilson for false rejects): more audio of the same kinds, "
        "other clips of the same voices.",
        "",
        f"- false accepts: {s['fa_per_hour']:.1f} per hour "
        f"({s['false_accepts']} in {r.hours:.2f} h; 95 % interval "
        f"{fa_low:.1f}-{fa_high:.1f})",
        f"- false rejects (clean command clips of held-out voices not recognized as their "
        f"command): {pct(s['fr'])} of {s['commands']} (95 % interval "
        f"{100 * fr_low:.1f}-{100 * fr_high:.1f} %; {fr_parts})",
        "- commands that fired: " + (", ".join(f"{w} {n}" for w, n in fired.most_common(12))
                                     or "none"),
    ]
    if r.peer_confidences is not None and "PocketSphinx, held-out voices" in c:
        pc = c["PocketSphinx, held-out voices"]
        p = min(pc, key=lambda q: abs(q["threshold"] - r.peer_threshold))
        lines.append(f"- PocketSphinx on the same segments at its threshold "
                     f"{r.peer_threshold:.2f} (see accuracy.md): {p['fa_per_hour']:.1f} false "
                     f"accepts per hour, {pct(p['fr'])} false rejects")
    lines += [
        "",
        "## Choosing the threshold",
        "",
        f"![false rejects against false accepts per hour]({png.name})",
        "",
    ]
    if rec:
        lines.append(f"Recommended threshold: **{rec['threshold']:g}**, the lowest with under "
                     f"{GOAL_FA:g} false accept per hour: {rec['fa_per_hour']:.2f} per hour at "
                     f"{pct(rec['fr'])} false rejects. Goal (< {GOAL_FA:g} per hour at < "
                     f"{100 * GOAL_FR:.0f} % false rejects): "
                     f"{'met' if rec['fr'] < GOAL_FR else 'not met'}.")
    else:
        f = s["fewest"]
        lines.append(f"No threshold gets under {GOAL_FA:g} false accept per hour; goal not met. "
                     f"The fewest, {f['fa_per_hour']:.1f} per hour, come at threshold "
                     f"{f['threshold']:g} with {pct(f['fr'])} false rejects.")
    names = list(c)
    lines += ["", "| threshold | " + " | ".join(f"{n}: FR" for n in names)
              + " | speechrnn FA / h |" + (" PocketSphinx FA / h |" if any(
                  n.startswith("Pocket") for n in names) else ""),
              "|---:|" + "---:|" * (len(names) + 1 + any(n.startswith("Pocket")
                                                         for n in names))]
    for i, t in enumerate(THRESHOLDS):
        row = f"| {t:g} | " + " | ".join(pct(c[n][i]["fr"]) for n in names)
        row += f" | {false_accepts_per_hour(confs, r.hours, t):.1f} |"
        if any(n.startswith("Pocket") for n in names):
            row += f" {c['PocketSphinx, held-out voices'][i]['fa_per_hour']:.1f} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def pools(default_commands: list[str]) -> dict[str, list[testsets.Clip]]:
    """Clips saying no command, by origin, for the command-free audio."""
    out: dict[str, list[testsets.Clip]] = {}
    try:
        out["held-out synthetic voices, other words"] = testsets.synthetic_other_words(
            default_commands)
    except (FileNotFoundError, ImportError):
        pass
    try:
        speaker, word = testsets.real_held_out(default_commands)
        real = [c for s in (speaker, word) if s for c in s.clips
                if not testsets.says_a_command(c.said, default_commands)]
        if real:
            out["held-out real clips, other words and no word"] = real
    except ImportError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: bundled)")
    p.add_argument("--minutes", type=float, default=None,
                   help="length of the command-free audio (default 60; 3 with --quick)")
    p.add_argument("--no-peer", action="store_true", help="leave PocketSphinx out")
    p.add_argument("--quick", action="store_true", help="3 minutes, a few clips")
    p.add_argument("--out", type=Path, default=RESULTS / "false_alarms.md")
    args = p.parse_args(argv)
    minutes = args.minutes or (3.0 if args.quick else 60.0)
    recognizer = Recognizer(args.model, threshold=0.0)
    from benchmarks.bench_accuracy import FULL, QUICK, load_sets

    sets, voices = load_sets(QUICK if args.quick else FULL, [], None, recognizer.commands)
    sets = [s for s in sets if s.name in FR_SETS]
    if not sets:
        print("error: no held-out command clips for false rejects (synthetic corpus or "
              "../shared/data)", file=sys.stderr)
        return 2
    r = run(recognizer, sets, pools(recognizer.commands), voices, minutes,
            use_peer=not args.no_peer)
    write(r, "python benchmarks/bench_false_alarms.py" + (" --quick" if args.quick else ""),
          args.out)
    return 0


def write(r: FalseAlarmRun, command: str, out: Path) -> dict:
    png = out.with_suffix(".png")
    s = summary(r)
    marks = {"default": DEFAULT_THRESHOLD}
    if s["recommended"]:
        marks["recommended"] = s["recommended"]["threshold"]
    if r.peer_confidences is not None:
        marks["PocketSphinx: its threshold"] = r.peer_threshold
    plot(s["curves"], marks, png, f"{r.hours * 60:.0f} min of command-free audio; "
         f"{time.strftime('%Y-%m-%d')}, {command}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(r, command, png))
    print(f"wrote {out} and {png}", file=sys.stderr)
    return s


if __name__ == "__main__":
    sys.exit(main())
