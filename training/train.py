"""Train the BiLSTM-CTC model: config file in, resumable checkpoints and metrics log out.

    python -m training.train --config training/configs/default.json
    python -m training.train --quick          # 15-minute smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from speechrnn.decoding import CommandScorer, edit_distance, greedy_text
from speechrnn.text import BLANK_INDEX, TOKENS, normalize_text
from training.augment import AugmentConfig, Augmenter, mask_mel_bands, spec_augment
from training.checkpoint import (
    CheckpointError,
    history_from,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from training.datasets import (
    BucketBatchSampler,
    SpeechDataset,
    Utterance,
    collate,
    durations,
    read_manifest,
    read_speech_commands,
    split_by_speaker,
)
from training.ema import WeightAverage
from training.features import MFCC, FeatureConfig, model_input
from training.model import CTCModel, ModelConfig

log = logging.getLogger("training")
CONFIG_DIR = Path(__file__).parent / "configs"
VOCAB_DIR = Path(__file__).parent / "vocab"


class ConfigError(Exception):
    """An unusable config file; the message says which and why."""


@dataclass
class DataConfig:
    synth_manifest: str | None = "data/synth/manifest.jsonl"
    # More synthetic corpora (other seeds), for training only: their clips of held-out
    # voices are dropped, so validation and the benchmarks stay on unheard voices.
    extra_synth_manifests: list[str] = field(default_factory=list)
    synth_held_out_voices: list[str] = field(
        default_factory=lambda: ["flite:rms"])
    synth_held_out_fraction: float = 0.08  # of the espeak-ng voice x variant combinations
    max_synth_clips: int | None = None
    # Real recordings: a list of {"manifest": path, "repeat": n, "held_out": [...]}
    # where held_out names whole sources/speakers or words kept for validation only.
    real: list[dict] = field(default_factory=lambda: [{
        "manifest": "../shared/data/speech/manifest.jsonl", "repeat": 3,
        "held_out_sources": ["felixchenfy/ros_speech_commands_classification"],
        "held_out_words": ["jarvis"]}])
    speech_commands_dir: str | None = None
    validation_clips: int = 600  # per validation set, to keep epochs short


@dataclass
class TrainConfig:
    run_dir: str = "runs/default"
    output: str = "training/checkpoints/default.pt"
    seed: int = 1
    model: dict = field(default_factory=dict)  # ModelConfig fields
    augment: dict = field(default_factory=dict)  # AugmentConfig fields
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 300
    weight_decay: float = 1e-5
    grad_clip: float = 5.0
    max_epochs: int = 12
    patience: int = 4  # epochs without validation improvement before stopping
    max_minutes: float = 88.0  # total training time budget across resumes
    threads: int = 0  # torch threads; 0 = cores left after the data workers
    workers: int = 1
    device: str = "auto"  # "cpu", "cuda" (or "cuda:N"), or "auto": a GPU when torch sees one
    spec_augment: bool = True
    # Above 0: SpecAugment's frequency masks go on the log-mel bands (this many a clip,
    # each up to `mel_mask_width` of the 40 bands wide) instead of on the cepstral
    # coefficients.
    mel_masks: int = 0
    mel_mask_width: int = 8
    # Arithmetic of the network's training steps on the CPU: "fp32", "bf16" (autocast;
    # the front end, the loss and the weights stay fp32) or "auto": bf16 where the CPU
    # has native bf16 instructions (AVX512-BF16, AMX), as oneDNN reports.
    precision: str = "auto"
    # Frame every clip of a batch with the same total silence (less LSTM padding). On in
    # the shipped recipe's stage 2 (finetune_silence.json: 23 epochs in its 45 minutes
    # against 17, and a small gain, see the README); a one-stage run with it and wide
    # silence from the start learned slower per minute.
    batch_framing: bool = False
    init_checkpoint: str | None = None  # start from these weights (fine-tuning)
    # Which epoch becomes `output`: "best" by validation score, or "last". The validation
    # sets are small (one real speaker, one real word), so in a short fine-tune the best
    # epoch can be a lucky one; "last" is chosen by nothing.
    keep: str = "best"
    # Above 0: validate and ship an exponential moving average of the weights, updated
    # every step with this decay (0.999 averages over about the last 1,000 steps). Off in
    # the shipped recipe: stage 2 with 0.999 moved every figure by a point or less, both
    # ways (the cosine schedule's low final learning rate already smooths the weights).
    ema_decay: float = 0.0
    # Above 0: a frozen teacher (`teacher_checkpoint`, by default `init_checkpoint`)
    # labels each clip's clean copy (the same speech before reverberation, noise and
    # channel effects; Augmenter.pair), and the loss adds this weight times the KL
    # divergence from the teacher's frame posteriors to the model's on the noisy clip
    # (summed over frames, divided by the transcript's length like the CTC loss), so the
    # model learns to hear through noise what it hears in clean speech. Off in the
    # shipped recipe: as a 45-minute third stage from 0.6.0 (finetune_distill.json, weight
    # 1 or 5) it gained 2 points at 8 kHz and in exact spelling but none in noise (README).
    distill_weight: float = 0.0
    teacher_checkpoint: str | None = None


def load_config(path: str | Path | None, overrides: dict | None = None) -> TrainConfig:
    """Read a JSON config (every field optional) into a TrainConfig."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {path} cannot be read: {e}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON "
                              f"(line {e.lineno}: {e.msg})") from None
        if not isinstance(raw, dict) or not raw:
            raise ConfigError(f"config file {path} is empty; it needs a JSON object")
    raw.update(overrides or {})
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"config {path}: unknown settings {sorted(unknown)}")
    data = raw.pop("data", {})
    try:
        cfg = TrainConfig(**raw, data=DataConfig(**data))
    except TypeError as e:
        raise ConfigError(f"config {path}: {e}") from None
    if cfg.mel_masks < 0 or cfg.mel_mask_width < 1:
        raise ConfigError(f"config {path}: mel_masks must be at least 0 and mel_mask_width "
                          f"at least 1, not {cfg.mel_masks!r} and {cfg.mel_mask_width!r}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ConfigError(f"config {path}: ema_decay must be at least 0 and below 1, "
                          f"not {cfg.ema_decay!r}")
    if cfg.keep not in ("best", "last"):
        raise ConfigError(f"config {path}: keep must be \"best\" or \"last\", not {cfg.keep!r}")
    if cfg.distill_weight < 0 or (cfg.distill_weight and not (
            cfg.teacher_checkpoint or cfg.init_checkpoint)):
        raise ConfigError(f"config {path}: distill_weight must be at least 0, and above 0 "
                          "it needs teacher_checkpoint or init_checkpoint")
    if cfg.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"config {path}: precision must be \"auto\", \"fp32\" or \"bf16\", "
                          f"not {cfg.precision!r}")
    return cfg


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether training steps run under bf16 autocast (on the CPU only)."""
    if device.type != "cpu" or precision == "fp32":
        return False
    return precision == "bf16" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def build_model_config(cfg: TrainConfig) -> ModelConfig:
    model = dict(cfg.model)
    features = FeatureConfig(**model.pop("features", {}))
    return ModelConfig(features=features, **model)


# ----------------------------------------------------------------------------- data


@dataclass
class Corpus:
    train: list[Utterance]
    validation: dict[str, tuple[list[Utterance], list[str]]]  # name -> (clips, command list)


def read_list(path: Path) -> list[str]:
    return [normalize_text(s) for s in path.read_text().splitlines()
            if s.strip() and not s.startswith("#")]


def split_synthetic(manifest: str | Path, cfg: DataConfig):
    """(train, held-out) clips of a synthetic manifest, split by voice as configured."""
    return split_by_speaker(read_manifest(manifest, source="synth"),
                            cfg.synth_held_out_fraction, cfg.synth_held_out_voices,
                            hashed_prefix="espeak-ng:")


def build_corpus(cfg: DataConfig, seed: int) -> Corpus:
    rng = random.Random(seed)
    sc_words = read_list(VOCAB_DIR / "speech_commands.txt")
    train: list[Utterance] = []
    validation: dict[str, tuple[list[Utterance], list[str]]] = {}
    if cfg.synth_manifest:
        for manifest in [cfg.synth_manifest, *cfg.extra_synth_manifests]:
            if not Path(manifest).is_file():
                raise ConfigError(f"synthetic corpus {manifest} does not exist; render it "
                                  "with python -m training.synth (the README's training "
                                  "section gives the command)")
        tr, held = split_synthetic(cfg.synth_manifest, cfg)
        for extra in cfg.extra_synth_manifests:
            more, unheard = split_synthetic(extra, cfg)
            tr += more
            log.info("synthetic %s: %d train clips (%d of held-out voices dropped)", extra,
                     len(more), len(unheard))
        if cfg.max_synth_clips:
            tr = rng.sample(tr, min(len(tr), cfg.max_synth_clips))
        train += tr
        held_sc = [u for u in held if u.text in sc_words]
        validation["synth_heldout_voices"] = (_subset(held_sc, cfg.validation_clips, rng),
                                              sc_words)
        log.info("synthetic: %d train clips, %d held-out (%d voices)", len(tr), len(held),
                 len({u.speaker for u in held}))
    for spec in cfg.real:
        manifest = Path(spec["manifest"])
        if not manifest.is_file():
            log.warning("real recordings %s not found; training without them", manifest)
            continue
        real = read_manifest(manifest)
        sources = set(spec.get("held_out_sources", []))
        words = set(spec.get("held_out_words", []))
        held = [u for u in real if u.source in sources or u.text in words]
        tr = [u for u in real if not (u.source in sources or u.text in words)]
        train += tr * int(spec.get("repeat", 1))
        # Each held-out group is scored against all the words of its source.
        for name, group in _group_held_out(held, words).items():
            vocab = sorted({u.text for u in real if u.text and u.source == group[0].source})
            validation[name] = (_subset(group, cfg.validation_clips, rng), vocab)
        log.info("real %s: %d train clips (x%d), %d held out", manifest, len(tr),
                 int(spec.get("repeat", 1)), len(held))
    if cfg.speech_commands_dir:
        try:
            splits = read_speech_commands(cfg.speech_commands_dir)
        except FileNotFoundError as e:
            raise ConfigError(f"{e}: put the Google Speech Commands folder (word/*.wav "
                              "with validation_list.txt and testing_list.txt) there, or "
                              "set data.speech_commands_dir") from None
        if not splits["train"]:
            raise ConfigError(f"Speech Commands folder {cfg.speech_commands_dir} holds no "
                              "training clips (word/*.wav)")
        train += splits["train"]
        validation["speech_commands"] = (_subset(splits["validation"], cfg.validation_clips,
                                                 rng), sc_words)
    if not train:
        raise ConfigError("no training data found: generate the synthetic corpus first "
                          "(python -m training.synth) or point the config to a manifest")
    return Corpus(train, validation)


def _subset(utts: list[Utterance], n: int, rng: random.Random) -> list[Utterance]:
    return sorted(rng.sample(utts, n), key=lambda u: u.path) if len(utts) > n else utts


def _group_held_out(held: list[Utterance], words: set[str]) -> dict[str, list[Utterance]]:
    """Held-out clips by source, unseen words apart from unseen speakers."""
    groups: dict[str, list[Utterance]] = {}
    for u in held:
        short = u.source.split("/")[-1].split("_")[0].split("-")[0]
        key = f"real_{short}_unseen_words" if u.text in words else f"real_{short}"
        groups.setdefault(key, []).append(u)
    return groups


class CollateWithFeatures:
    """`collate` with the padded `audio` replaced by the network's input features (`feats`,
    `feat_lengths`), made in the data worker. The front end has no trained weights, and on
    a 2-core CPU the main process spends about a tenth of each step on it while the worker
    has time to spare; the audio, about 5 MB a batch, would cross to the main process
    unread."""

    def __init__(self, features: FeatureConfig):
        self.mfcc = MFCC(features)

    def __call__(self, items):
        batch = collate(items)
        if batch is not None:
            with torch.no_grad():
                batch["feats"], batch["feat_lengths"] = model_input(
                    self.mfcc, batch.pop("audio"), batch["audio_lengths"])
        return batch


def make_loader(utts, cfg: TrainConfig, augment, epoch_seed: int, train: bool,
                collate_fn=collate):
    ds = SpeechDataset(utts, augment=augment, as_heard=not train,
                       clean_copies=train and cfg.distill_weight > 0)
    if train:
        sampler = BucketBatchSampler([u.seconds for u in utts], cfg.batch_size, cfg.seed,
                                     tag_batches=cfg.batch_framing)
        sampler.set_epoch(epoch_seed)
        kw = {"batch_sampler": sampler}
    else:
        kw = {"batch_size": cfg.batch_size, "shuffle": False}
    return torch.utils.data.DataLoader(
        ds, collate_fn=collate_fn, num_workers=cfg.workers if train else 0,
        worker_init_fn=_worker_init if train else None,
        persistent_workers=False, **kw)


def _worker_init(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    torch.set_num_threads(1)
    if info is not None and info.dataset.augment is not None:
        info.dataset.augment.reseed(info.seed % 2**32)


# ----------------------------------------------------------------------------- metrics


def resolve_device(name: str) -> torch.device:
    """The torch device a config names; "auto" picks the first GPU when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a torch device; use cpu, cuda or auto") \
            from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but torch sees no GPU; "
                          "use cpu or auto")
    return device


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on `device` (the rest as it is)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: CTCModel, sets: dict, cfg: TrainConfig) -> dict:
    """Per validation set: loss, character error rate, command accuracy (on audio as the
    runtime hears it: make_loader loads validation clips with their clipping rebuilt)."""
    model.eval()
    device = next(model.parameters()).device
    results = {}
    for name, (utts, commands) in sets.items():
        loss_sum, n_items, edits, chars, correct, scored = 0.0, 0, 0, 0, 0, 0
        # The runtime's own scorer (its command graph and blank penalty), so the logged
        # command accuracy is the accuracy users get.
        scorer = CommandScorer(commands, TOKENS, BLANK_INDEX) if commands else None
        for batch in make_loader(utts, cfg, None, 0, train=False):
            if batch is None:
                continue
            batch = to_device(batch, device)
            lp, fl = model(batch["audio"], batch["audio_lengths"])
            loss = torch.nn.functional.ctc_loss(
                lp.transpose(0, 1), batch["targets"], fl, batch["target_lengths"],
                blank=BLANK_INDEX, reduction="sum", zero_infinity=True)
            loss_sum += float(loss)
            n_items += lp.shape[0]
            frames = lp.float().cpu().numpy()
            for j, i in enumerate(batch["index"]):
                ref, clip = utts[int(i)].text, frames[j, : int(fl[j])]
                edits += edit_distance(greedy_text(clip, TOKENS, BLANK_INDEX), ref)
                chars += max(len(ref), 1)
                if scorer is not None and ref in commands:
                    scored += 1
                    best = int(np.argmax(scorer.command_log_likelihoods(clip)))
                    correct += commands[best] == ref
        results[name] = {"loss": loss_sum / max(n_items, 1), "cer": edits / max(chars, 1),
                         "command_acc": correct / scored if scored else None,
                         "clips": n_items}
    model.train()
    return results


def validation_score(results: dict) -> float:
    """Mean command accuracy over the validation sets (higher is better)."""
    accs = [r["command_acc"] for r in results.values() if r["command_acc"] is not None]
    return float(np.mean(accs)) if accs else -float(np.mean([r["loss"] for r in results.values()]))


# ----------------------------------------------------------------------------- training


def lr_at(step: int, progress: float, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak as `progress` goes 0 -> 1.

    Progress is the larger of steps done and time budget used, so a run cut short by
    its time budget still ends with a decayed learning rate.
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, max(0.0, progress))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    _setup_logging(run)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    threads = cfg.threads or max(1, (os.cpu_count() or 1) - cfg.workers)
    torch.set_num_threads(threads)
    log.info("torch threads %d, data workers %d", threads, cfg.workers)

    corpus = build_corpus(cfg.data, cfg.seed)
    train_utts = durations(corpus.train)
    augmenter = Augmenter(AugmentConfig(**cfg.augment), seed=cfg.seed)
    device = resolve_device(cfg.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    model = CTCModel(build_model_config(cfg)).to(device)
    log.info("model: %d parameters, config %s, on %s", model.num_parameters(),
             json.dumps(model.config.to_dict()), gpu or "the CPU")
    # Fused: one kernel for all the weights, a fifth of the per-tensor loop's time on the CPU.
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=True)
    steps_per_epoch = len(BucketBatchSampler([u.seconds for u in train_utts], cfg.batch_size))
    total_steps = steps_per_epoch * cfg.max_epochs

    ema_state = None
    state = {"epoch": 0, "step": 0, "elapsed": 0.0, "best_score": -float("inf"),
             "bad_epochs": 0, "skipped_nan": 0, "history": []}
    last = run / "last.pt"
    if cfg.init_checkpoint and not (resume and last.exists()):
        try:
            init = load_checkpoint(cfg.init_checkpoint)
            model.load_state_dict(init["model_state"])
        except (CheckpointError, RuntimeError) as e:
            raise ConfigError(f"init_checkpoint {cfg.init_checkpoint}: {e}") from None
        state.update(history_from(cfg.init_checkpoint, init))
        log.info("starting from the weights of %s", cfg.init_checkpoint)
    if resume and last.exists():
        try:
            ckpt = load_checkpoint(last)
        except CheckpointError as e:
            raise ConfigError(str(e)) from None
        model.load_state_dict(ckpt["model_state"])
        opt.load_state_dict(ckpt["optimizer"])
        state = ckpt["train_state"]
        ema_state = ckpt.get("ema_state")
        torch.set_rng_state(ckpt["torch_rng"])
        if "py_rng" in ckpt:  # SpecAugment draws from `random`: same masks as unbroken
            random.setstate(ckpt["py_rng"])
            np.random.set_state(ckpt["np_rng"])
        log.info("resumed from %s at epoch %d (%.1f min trained)", last, state["epoch"],
                 state["elapsed"] / 60)

    # CPU counts behind the training time (earlier stages' included), for the cost report.
    cores = state.setdefault("cpu_cores", [])
    if os.cpu_count() not in cores:
        cores.append(os.cpu_count())
    if gpu:
        gpus = state.setdefault("gpus", [])
        if gpu not in gpus:
            gpus.append(gpu)
    ema = WeightAverage(model, cfg.ema_decay, ema_state) if cfg.ema_decay else None
    mel_augment = None
    if cfg.mel_masks and cfg.spec_augment:
        def mel_augment(log_mel, lengths):
            return mask_mel_bands(log_mel, lengths.cpu(), cfg.mel_masks, cfg.mel_mask_width)
    # On a GPU the workers are the bottleneck and the front end costs the GPU little.
    worker_features = device.type == "cpu" and cfg.workers > 0 and mel_augment is None
    collate_fn = CollateWithFeatures(model.config.features) if worker_features else collate
    teacher = None
    if cfg.distill_weight:
        source = cfg.teacher_checkpoint or cfg.init_checkpoint
        try:
            teacher = load_model(source).to(device)
        except CheckpointError as e:
            raise ConfigError(f"teacher_checkpoint {source}: {e}") from None
        log.info("distilling from %s on clean copies, weight %g", source, cfg.distill_weight)
    budget = cfg.max_minutes * 60
    bf16 = use_bf16(cfg.precision, device)
    log.info("training arithmetic: %s", "bf16 autocast" if bf16 else "fp32")
    metrics_log = open(run / "metrics.jsonl", "a")
    model.train()
    while state["epoch"] < cfg.max_epochs and state["elapsed"] < budget:
        epoch = state["epoch"]
        t0, ep_loss, ep_items, ep_dropped = time.time(), 0.0, 0, 0
        loader = make_loader(train_utts, cfg, augmenter, epoch, train=True,
                             collate_fn=collate_fn)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.max_epochs}", unit="batch",
                   dynamic_ncols=True, disable=None)
        out_of_time = False
        for batch in bar:
            if batch is None:
                continue
            ep_dropped += batch["dropped"]
            batch = to_device(batch, device)
            used = (state["elapsed"] + time.time() - t0) / budget
            for g in opt.param_groups:
                g["lr"] = lr_at(state["step"], max(state["step"] / total_steps, used), cfg)
            if "feats" in batch:
                feats, lengths = batch["feats"], batch["feat_lengths"]
            else:
                feats, lengths = model.features(batch["audio"], batch["audio_lengths"],
                                                mel_augment)
            if cfg.spec_augment:
                feats = spec_augment(feats, lengths.cpu(),
                                     freq_masks=0 if cfg.mel_masks else 2)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                lp, fl = model.encode(feats, lengths)
            lp = lp.float()
            loss = torch.nn.functional.ctc_loss(
                lp.transpose(0, 1), batch["targets"], fl, batch["target_lengths"],
                blank=BLANK_INDEX, reduction="mean", zero_infinity=True)
            if teacher is not None:
                loss = loss + cfg.distill_weight * distillation_loss(
                    teacher, batch, lp, fl, bf16)
            if not torch.isfinite(loss):
                state["skipped_nan"] += 1
                log.warning("non-finite loss at step %d; batch skipped", state["step"])
                opt.zero_grad(set_to_none=True)
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if not torch.isfinite(grad_norm):
                state["skipped_nan"] += 1
                log.warning("non-finite gradient at step %d; update skipped", state["step"])
                continue
            opt.step()
            if ema:
                ema.update(model)
            state["step"] += 1
            ep_loss += loss.item() * lp.shape[0]
            ep_items += lp.shape[0]
            bar.set_postfix(loss=f"{ep_loss / ep_items:.3f}",
                            lr=f"{opt.param_groups[0]['lr']:.1e}")
            if bar.disable and state["step"] % 200 == 0:  # no terminal: log progress
                log.info("step %d, epoch %d, loss %.3f, %.0f clips/s", state["step"],
                         epoch + 1, ep_loss / ep_items, ep_items / (time.time() - t0))
            if state["elapsed"] + time.time() - t0 > budget:
                out_of_time = True
                break
        state["elapsed"] += time.time() - t0
        state["epoch"] += 1
        with shipped_weights(model, ema):
            results = evaluate(model, corpus.validation, cfg)
        score = validation_score(results)
        entry = {"epoch": state["epoch"], "step": state["step"],
                 "train_loss": ep_loss / max(ep_items, 1), "val": results, "score": score,
                 "minutes": state["elapsed"] / 60, "skipped_nan": state["skipped_nan"],
                 "dropped_clips": ep_dropped, "partial_epoch": out_of_time}
        state["history"].append(entry)
        metrics_log.write(json.dumps(entry) + "\n")
        metrics_log.flush()
        log.info("epoch %d: train loss %.3f, %s, score %.4f (%.1f min)", state["epoch"],
                 entry["train_loss"], _summary(results), score, state["elapsed"] / 60)
        improved = score > state["best_score"]
        if improved:
            state["best_score"], state["bad_epochs"] = score, 0
            with shipped_weights(model, ema):
                save_checkpoint(run / "best.pt", model, train_state=dict(state),
                                training_data=describe_data(cfg))
        else:
            state["bad_epochs"] += 1
        save_checkpoint(last, model, optimizer=opt.state_dict(), train_state=state,
                        torch_rng=torch.get_rng_state(), py_rng=random.getstate(),
                        np_rng=np.random.get_state(), config=asdict(cfg),
                        **({"ema_state": ema.state} if ema else {}))
        if state["bad_epochs"] >= cfg.patience:
            log.info("no improvement for %d epochs; stopping early", cfg.patience)
            break
    metrics_log.close()
    output = Path(cfg.output)
    if cfg.keep == "last":
        with shipped_weights(model, ema):
            save_checkpoint(output, model, train_state=dict(state),
                            training_data=describe_data(cfg))
        log.info("last model (epoch %d, score %.4f) written to %s", state["epoch"],
                 state["history"][-1]["score"] if state["history"] else float("nan"), output)
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "best.pt", output.with_name(output.name + ".tmp"))
    os.replace(output.with_name(output.name + ".tmp"), output)
    log.info("best model (score %.4f) written to %s", state["best_score"], output)
    return output


@torch.no_grad()
def teacher_log_probs(teacher: CTCModel, audio: torch.Tensor, lengths: torch.Tensor,
                      bf16: bool) -> torch.Tensor:
    feats, flen = teacher.features(audio, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return teacher.encode(feats, flen)[0].float()


def distillation_loss(teacher: CTCModel, batch: dict, log_probs: torch.Tensor,
                      frame_lengths: torch.Tensor, bf16: bool) -> torch.Tensor:
    """KL(teacher on the clean copies || model on the noisy clips) a frame, summed over
    each clip's frames and divided by its transcript's length, averaged over the batch."""
    target = teacher_log_probs(teacher, batch["clean_audio"], batch["audio_lengths"], bf16)
    frames = torch.arange(log_probs.shape[1], device=log_probs.device)
    valid = (frames[None, :] < frame_lengths[:, None]).to(log_probs.dtype)
    kl = (target.exp() * (target - log_probs)).sum(-1)
    per_clip = (kl * valid).sum(1) / batch["target_lengths"].clamp(min=1)
    return per_clip.mean()


def shipped_weights(model: CTCModel, ema: WeightAverage | None):
    """The weights validation sees and checkpoints ship: the average, when the run keeps one."""
    return ema.applied(model) if ema else nullcontext(model)


def describe_data(cfg: TrainConfig) -> str:
    parts = []
    if cfg.data.synth_manifest:
        parts.append("synthetic speech (espeak-ng, flite, festival voices)")
    parts += [f"real recordings from {Path(r['manifest']).parent.name}" for r in cfg.data.real]
    if cfg.data.speech_commands_dir:
        parts.append("Google Speech Commands")
    return "; ".join(parts) + "; augmented with real noise, reverberation, 8 kHz channels"


def _summary(results: dict) -> str:
    return ", ".join(
        f"{k}: cer {v['cer']:.3f}" + (f" acc {v['command_acc']:.3f}" if v["command_acc"]
                                      is not None else "")
        for k, v in results.items())


def _setup_logging(run: Path) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in (logging.StreamHandler(sys.stderr), logging.FileHandler(run / "train.log")):
        h.setFormatter(fmt)
        root.addHandler(h)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=None,
                   help="JSON config; every TrainConfig field is optional "
                        "(default: training/configs/default.json)")
    p.add_argument("--quick", action="store_true",
                   help="use training/configs/quick.json: a smoke run of at most 15 minutes")
    p.add_argument("--fresh", action="store_true",
                   help="ignore RUN_DIR/last.pt and start over (default: resume if present)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help='override a top-level setting, e.g. --set max_minutes=30')
    args = p.parse_args(argv)
    path = args.config or CONFIG_DIR / ("quick.json" if args.quick else "default.json")
    try:
        overrides = {}
        for item in args.set:
            key, _, value = item.partition("=")
            try:
                overrides[key] = json.loads(value)
            except json.JSONDecodeError:
                overrides[key] = value
        cfg = load_config(path, overrides)
        train(cfg, resume=not args.fresh)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; resume with the same command (the last finished epoch is kept)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
