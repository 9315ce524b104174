"""Command accuracy on voices the model never heard, clean and degraded, with the peer
(PocketSphinx restricted to the same commands) on the same clips in the same run.

    python benchmarks/bench_accuracy.py [--quick] [--manifest NAME=FILE ...] [--no-peer]

speechrnn is measured through its runtime (`speechrnn.Recognizer`, onnxruntime, one
thread), as users get it. Writes benchmarks/results/accuracy.md. `python -m benchmarks`
runs this with the rest of the suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import conditions as cond  # noqa: E402
from benchmarks import testsets  # noqa: E402
from benchmarks.common import machine  # noqa: E402
from benchmarks.peer import PeerUnavailable, PocketSphinx, version  # noqa: E402
from benchmarks.scoring import (  # noqa: E402
    REJECTED,
    Verdict,
    outcome,
    pct,
    speechrnn_verdict,
)
from speechrnn.recognizer import DEFAULT_THRESHOLD, Recognizer  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "accuracy.md"
FULL = {"synthetic": 320, "phrases": 240, "real-speaker": 320, "real-word": 160,
        "manifest": None}
QUICK = {"synthetic": 24, "phrases": 16, "real-speaker": 24, "real-word": 12, "manifest": 24}


@dataclass
class Scored:
    set: str
    condition: str
    index: int
    clip: testsets.Clip
    ours: Verdict
    peer: Verdict | None


@dataclass
class AccuracyRun:
    sets: list[testsets.TestSet]
    conditions: list[str]
    scored: list[Scored]
    peer_threshold: float
    peer_note: str
    seconds: float
    voices: bool  # whether cafe noise (held-out voices) was available

    def of(self, set_name: str | None = None, condition: str | None = None,
           kind: str | None = None) -> list[Scored]:
        return [s for s in self.scored if (set_name is None or s.set == set_name)
                and (condition is None or s.condition == condition)
                and (kind is None or s.clip.kind == kind)]


def load_sets(counts: dict, manifests: list[str], commands_file: Path | None,
              default_commands: list[str]) -> tuple[list[testsets.TestSet], list]:
    """The test sets at hand, and held-out synthetic voices' audio for cafe noise."""
    sets: list[testsets.TestSet] = []
    voices: list = []
    try:
        held = testsets.held_out_synthetic()
        synth = testsets.synthetic_set(counts["synthetic"], held=held)
        sets.append(synth)
        others = testsets.sample(testsets.synthetic_other_words(synth.commands, held), 60,
                                 seed=5)
        voices = [c.audio() for c in others]
        sets.append(testsets.phrase_set(counts["phrases"], held=held))
    except FileNotFoundError:
        testsets.skip("the synthetic set", "no synthetic corpus (python -m training.synth)")
    except ImportError as e:
        testsets.skip("the synthetic set", f"the train extra is not installed ({e.name})")
    try:
        speaker, word = testsets.real_held_out(default_commands)
        if speaker:
            speaker.clips = testsets.sample(speaker.clips, counts["real-speaker"], seed=2)
            sets.append(speaker)
        if word:
            word.clips = testsets.sample(word.clips, counts["real-word"], seed=3)
            sets.append(word)
        if not (speaker or word):
            testsets.skip("the real held-out sets", "../shared/data/speech is not there")
    except ImportError as e:
        testsets.skip("the real held-out sets", f"the train extra is not installed ({e.name})")
    user_commands = None
    if commands_file:
        from speechrnn.commands import load_commands

        user_commands = load_commands(commands_file)
    for arg in manifests:
        name, path = testsets.parse_manifest_arg(arg)
        s = testsets.manifest_set(name, path, user_commands)
        s.clips = testsets.sample(s.clips, counts["manifest"], seed=4)
        sets.append(s)
    return sets, voices


CHUNK = 16  # clips whose trials the two systems take in turn


def _trials(s: testsets.TestSet, conditions: list, desc: str):
    """(clip index, clip, condition, audio, rate) for every clip of a set under every
    condition, made as they are asked for (a user's manifest set may be any size)."""
    for i, clip in enumerate(tqdm(s.clips, desc=desc, disable=None)):
        audio = clip.audio()
        for c in conditions:
            x, rate = c.apply(audio, i)
            yield i, clip, c, x, rate


def _chunks(trials, size: int):
    chunk = []
    for trial in trials:
        chunk.append(trial)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run(sets: list[testsets.TestSet], voices: list, recognizer: Recognizer,
        use_peer: bool = True) -> AccuracyRun:
    """Every clip of every set under every condition, through both systems.

    The two take turns by chunks: the trials of CHUNK clips are made and held in memory,
    speechrnn decodes them all, then PocketSphinx does. Calling the two in turn on every
    clip made each slower, as each evicted the other's data from the CPU caches
    (speechrnn's real-time factor 0.0011 alone against 0.0015 interleaved). Two whole
    passes, each trial's audio (noise, rooms, resampling) made just before its call,
    left speechrnn's caches cold too: on the same clips and machine, speechrnn 0.0013 and
    PocketSphinx 0.0161 that way against 0.0011 and 0.0160 in turns of a chunk from
    memory; and the ratio swung from 7.8x to 11.4x between such runs on one machine. A
    user runs one recognizer over their audio, not both, and no noise generator. Turns
    keep each system's caches its own, and a slowdown of the shared machine falls on both.
    """
    start = time.perf_counter()
    conditions = cond.conditions(voices)
    scored: list[Scored] = []
    note = ""
    for s in sets:
        ours = Recognizer(recognizer.session, s.commands, threshold=0.0)
        peer = None
        if use_peer:
            try:
                peer = PocketSphinx(s.commands)
            except PeerUnavailable as e:
                note = str(e)
                use_peer = False
        if peer is not None and peer.missing:
            note += f" On {s.name}, PocketSphinx's dictionary lacks {', '.join(peer.missing)}."
        for chunk in _chunks(_trials(s, conditions, s.name), CHUNK * len(conditions)):
            items = [Scored(s.name, c.name, i, clip, speechrnn_verdict(ours, x, rate), None)
                     for i, clip, c, x, rate in chunk]
            if peer is not None:
                for item, (_, _, _, x, rate) in zip(items, chunk, strict=True):
                    item.peer = peer.verdict(x, rate)
            scored += items
    run = AccuracyRun(sets, [c.name for c in conditions], scored, 0.0, note,
                      time.perf_counter() - start, bool(voices))
    run.peer_threshold = matched_peer_threshold(run)
    return run


def rejection(items: list[Scored], threshold: float, peer: bool = False) -> float:
    """Share of clips without a command that give no command at this threshold."""
    rest = [s for s in items if s.clip.kind != "command"]
    if not rest:
        return float("nan")
    return sum(not (s.peer if peer else s.ours).text(threshold) for s in rest) / len(rest)


def matched_peer_threshold(run: AccuracyRun) -> float:
    """PocketSphinx's confidence threshold that rejects as many clean clips without a
    command as speechrnn does at its default threshold (0 when there are none)."""
    clean = run.of(condition="clean")
    if not clean or clean[0].peer is None:
        return 0.0
    target = rejection(clean, DEFAULT_THRESHOLD)
    if target != target:
        return 0.0
    for t in [x / 100 for x in range(0, 100)]:
        if rejection(clean, t, peer=True) >= target:
            return t
    return 0.99


def rates(items: list[Scored], threshold: float, peer: bool = False) -> dict[str, float]:
    cmd = [s for s in items if s.clip.kind == "command"]
    counts = Counter(outcome(s.clip.expected, (s.peer if peer else s.ours).text(threshold))
                     for s in cmd)
    n = max(len(cmd), 1)
    top1 = sum((s.peer if peer else s.ours).best == s.clip.expected for s in cmd) / n
    return {"clips": len(cmd), "right": counts["right"] / n, "wrong": counts["wrong"] / n,
            "rejected": counts["rejected"] / n, "top1": top1 if cmd else float("nan"),
            "rejection": rejection(items, threshold, peer)}


def paired(items: list[Scored], peer_threshold: float, top1: bool = False) -> tuple[int, int]:
    """Command clips that speechrnn alone gets right, and that the peer alone does (at
    their thresholds, or their best command with `top1`): the counts McNemar's test reads."""
    def right(s: Scored, peer: bool) -> bool:
        v = s.peer if peer else s.ours
        if top1:
            return v.best == s.clip.expected
        return outcome(s.clip.expected,
                       v.text(peer_threshold if peer else DEFAULT_THRESHOLD)) == "right"

    cmd = [s for s in items if s.clip.kind == "command"]
    ours, theirs = [right(s, False) for s in cmd], [right(s, True) for s in cmd]
    return (sum(a and not b for a, b in zip(ours, theirs, strict=True)),
            sum(b and not a for a, b in zip(ours, theirs, strict=True)))


def rtf(items: list[Scored], peer: bool = False) -> float:
    vs = [s.peer if peer else s.ours for s in items]
    audio = sum(v.seconds for v in vs)
    return sum(v.compute for v in vs) / audio if audio else float("nan")


def summary(run: AccuracyRun) -> dict:
    """Headline figures for the README table."""
    out: dict = {"sets": {}}
    for s in run.sets:
        row = {}
        for c in run.conditions:
            items = run.of(s.name, c)
            has_peer = bool(items) and items[0].peer is not None
            row[c] = {"ours": rates(items, DEFAULT_THRESHOLD),
                      "peer": rates(items, run.peer_threshold, True) if has_peer else None,
                      "paired": {"right": paired(items, run.peer_threshold),
                                 "top1": paired(items, run.peer_threshold, top1=True)}
                      if has_peer else None}
        out["sets"][s.name] = row
    out["rtf"] = rtf(run.scored)
    out["peer_rtf"] = rtf(run.scored, True) if run.scored and run.scored[0].peer else None
    out["peer_threshold"] = run.peer_threshold
    return out


def report(run: AccuracyRun, command: str) -> str:
    has_peer = bool(run.scored) and run.scored[0].peer is not None
    lines = [
        "# Command accuracy on voices the model never heard, and the peer on the same clips",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine()}, by `{command}` "
        f"in {run.seconds / 60:.1f} min (both systems together).",
        "",
        f"- speechrnn: the runtime (`speechrnn.Recognizer`, onnxruntime, one thread), default "
        f"threshold {DEFAULT_THRESHOLD}; \"top-1\" is the best command with no rejection.",
    ]
    if has_peer:
        lines.append(
            f"- peer: PocketSphinx {version()} with its bundled US English model, a JSGF "
            "grammar of exactly one command of the same list, on the same audio. Its "
            "confidence is the lattice posterior of its answer; its threshold "
            f"({run.peer_threshold:.2f}) is the one that rejects as many clean clips without "
            "a command as speechrnn does at its default, so both trade misses for false "
            "accepts alike." + run.peer_note)
    else:
        lines.append(f"- peer: not run ({run.peer_note or '--no-peer'}).")
    lines += [
        "- conditions: clean; 20, 10, 5, 0 dB SNR (measured over the speech) with noises "
        "training never used, in turn clip by clip: "
        + ", ".join(k for k in cond.NOISE_KINDS if k != "cafe" or run.voices)
        + " (synthesized by `benchmarks/conditions.py`, see its docstring); 8 kHz "
        "band-limited (the clip given as an 8 kHz recording, resampled by the runtime); "
        "reverberant (synthetic rooms of a different model and seed from training's, "
        "RT60 0.3-0.9 s; training's real room responses are not used).",
        "",
        "## Sets",
        "",
        "| set | what | commands | command clips | other-word clips | no-word clips |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in run.sets:
        kinds = Counter(c.kind for c in s.clips)
        lines.append(f"| {s.name} | {s.description} | {len(s.commands)} | {kinds['command']} "
                     f"| {kinds['other word']} | {kinds['no word']} |")
    head = ("| set | condition | command clips | speechrnn right | wrong | rejected | top-1 "
            "| no-command clips rejected |")
    rule = "|---|---|---:|---:|---:|---:|---:|---:|"
    if has_peer:
        head += " PocketSphinx right | wrong | rejected | top-1 | no-command clips rejected |"
        rule += "---:|---:|---:|---:|---:|"
    lines += ["", "## Accuracy by set and condition", "",
              "Right: the clip gives exactly its command. No-command clips: other words and "
              "clips without a word, which must give nothing.", "", head, rule]
    for s in run.sets:
        for c in run.conditions:
            items = run.of(s.name, c)
            r = rates(items, DEFAULT_THRESHOLD)
            row = (f"| {s.name} | {c} | {r['clips']} | {pct(r['right'])} | {pct(r['wrong'])} "
                   f"| {pct(r['rejected'])} | {pct(r['top1'])} | {pct(r['rejection'])} |")
            if has_peer:
                p = rates(items, run.peer_threshold, True)
                row += (f" {pct(p['right'])} | {pct(p['wrong'])} | {pct(p['rejected'])} | "
                        f"{pct(p['top1'])} | {pct(p['rejection'])} |")
            lines.append(row)
    lines += _by_noise_kind(run, has_peer)
    lines += _per_command(run, has_peer)
    lines += _confusions(run)
    lines += ["", "## Speed on these clips", "",
              "Real-time factor: compute time over audio time, one thread, every clip under "
              "every condition (speechrnn: speech detection, model and decoder, as "
              "`transcribe` spends them at the default threshold: a clip's speech regions "
              "one by one only when its whole speech is rejected; PocketSphinx: "
              "`process_raw` to `hyp`). The two take turns: the audio of "
              f"{CHUNK} clips under every condition is made and held in memory, speechrnn "
              "decodes it all, then PocketSphinx does, and so on (`run`'s docstring says "
              "why).", "",
              "| set | speechrnn RTF | PocketSphinx RTF | speechrnn faster by |",
              "|---|---:|---:|---:|"]
    for s in run.sets + [None]:
        items = run.of(s.name) if s else run.scored
        ours = rtf(items)
        theirs = rtf(items, True) if has_peer else float("nan")
        lines.append(f"| {s.name if s else 'all'} | {ours:.4f} | "
                     f"{'–' if theirs != theirs else f'{theirs:.4f}'} | "
                     f"{'–' if theirs != theirs else f'{theirs / ours:.1f}×'} |")
    return "\n".join(lines) + "\n"


def _by_noise_kind(run: AccuracyRun, has_peer: bool) -> list[str]:
    snrs = [c for c in run.conditions if c.endswith(" dB")]
    lines = ["", "## Noisy conditions by noise kind", "",
             "Command clips recognized right at the default threshold"
             + (" (speechrnn / PocketSphinx)" if has_peer else "") + "; each cell holds about "
             "a quarter of the set's clips.", "",
             "| set | noise | " + " | ".join(snrs) + " |",
             "|---|---|" + "---:|" * len(snrs)]
    for s in run.sets:
        kinds = sorted({cond.noise_kind_of(c, x.index, run.voices)
                        for c in snrs for x in run.of(s.name, c)})
        for kind in kinds:
            cells = []
            for c in snrs:
                items = [x for x in run.of(s.name, c)
                         if cond.noise_kind_of(c, x.index, run.voices) == kind]
                r = rates(items, DEFAULT_THRESHOLD)
                cell = pct(r["right"], 0) if r["clips"] else "–"
                if has_peer and r["clips"]:
                    cell += " / " + pct(rates(items, run.peer_threshold, True)["right"], 0)
                cells.append(cell)
            lines.append(f"| {s.name} | {kind} | " + " | ".join(cells) + " |")
    return lines


def _per_command(run: AccuracyRun, has_peer: bool) -> list[str]:
    lines = ["", "## Per command", "",
             "Recognized right at the default threshold: clean, and over all conditions."
             + (" PocketSphinx beside." if has_peer else ""), "",
             "| set | command | clips | speechrnn clean | speechrnn all conditions |"
             + (" PocketSphinx clean | PocketSphinx all conditions |" if has_peer else ""),
             "|---|---|---:|---:|---:|" + ("---:|---:|" if has_peer else "")]
    for s in run.sets:
        by = defaultdict(list)
        for x in run.of(s.name, kind="command"):
            by[x.clip.expected].append(x)
        for command in sorted(by):
            items = by[command]
            clean = [x for x in items if x.condition == "clean"]
            row = (f"| {s.name} | {command} | {len(clean)} | "
                   f"{pct(rates(clean, DEFAULT_THRESHOLD)['right'], 0)} | "
                   f"{pct(rates(items, DEFAULT_THRESHOLD)['right'], 0)} |")
            if has_peer:
                row += (f" {pct(rates(clean, run.peer_threshold, True)['right'], 0)} | "
                        f"{pct(rates(items, run.peer_threshold, True)['right'], 0)} |")
            lines.append(row)
        r = rates(run.of(s.name), DEFAULT_THRESHOLD)
        row = (f"| {s.name} | **overall** | {rates(run.of(s.name, 'clean'), 0)['clips']} | "
               f"{pct(rates(run.of(s.name, 'clean'), DEFAULT_THRESHOLD)['right'])} | "
               f"{pct(r['right'])} |")
        if has_peer:
            row += (f" {pct(rates(run.of(s.name, 'clean'), run.peer_threshold, True)['right'])}"
                    f" | {pct(rates(run.of(s.name), run.peer_threshold, True)['right'])} |")
        lines.append(row)
    return lines


def _confusions(run: AccuracyRun) -> list[str]:
    lines = ["", "## Confusion table (speechrnn, clean, default threshold)", "",
             "What each word was heard as, most frequent first; words that are not commands "
             f"should be {REJECTED}.", "",
             "| set | said | clips | heard as |", "|---|---|---:|---|"]
    for s in run.sets:
        table: dict[str, Counter] = defaultdict(Counter)
        for x in run.of(s.name, "clean"):
            table[x.clip.said or "(no word)"][x.ours.text(DEFAULT_THRESHOLD) or REJECTED] += 1
        for said in sorted(table, key=lambda w: (w not in s.commands, w)):
            counts = table[said]
            heard = ", ".join(f"{w} {n}" for w, n in counts.most_common(6))
            if len(counts) > 6:
                heard += ", …"
            lines.append(f"| {s.name} | {said} | {sum(counts.values())} | {heard} |")
    return lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None,
                   help="ONNX model (default: the bundled speechrnn/models/speechrnn.int8.onnx)")
    p.add_argument("--manifest", action="append", default=[], metavar="NAME=FILE",
                   help="add your own JSONL manifest (path, text) as a test set; repeatable")
    p.add_argument("--commands", type=Path, default=None,
                   help="command list for --manifest sets (default: each manifest's texts)")
    p.add_argument("--no-peer", action="store_true", help="leave PocketSphinx out")
    p.add_argument("--quick", action="store_true", help="a few clips per set")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        recognizer = Recognizer(args.model, threshold=0.0)
        sets, voices = load_sets(QUICK if args.quick else FULL, args.manifest, args.commands,
                                 recognizer.commands)
    except (testsets.ManifestError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not sets:
        print("error: no test set at hand: generate the synthetic corpus, put the real "
              "recordings at ../shared/data, or give --manifest NAME=FILE", file=sys.stderr)
        return 2
    result = run(sets, voices, recognizer, not args.no_peer)
    command = "python benchmarks/bench_accuracy.py" + " ".join(
        [""] + (["--quick"] if args.quick else []) + [f"--manifest {m}" for m in args.manifest])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(result, command))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
