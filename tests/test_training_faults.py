"""Training faults beyond tests/test_training.py: a run killed with SIGKILL mid-epoch and
resumed ends with exactly the model of an uninterrupted run, and a checkpoint cut short
by a kill while it is written is never loaded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from test_training import make_corpus, tiny_config  # noqa: E402

from training import checkpoint as checkpoint_mod  # noqa: E402
from training import train as train_mod  # noqa: E402
from training.checkpoint import load_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3


def _train_cmd(config: Path) -> tuple[list[str], dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return [sys.executable, "-m", "training.train", "--config", str(config)], env


def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    manifest = make_corpus(tmp_path / "corpus", n=32)
    # Both runs have the same config, so the same schedule. One data worker: its
    # augmentation seed comes from torch's RNG, which the checkpoint keeps, so a resumed
    # epoch sees the same batches as an uninterrupted one. The time budget is far away,
    # so the learning rate follows steps only.
    # The weight average is on, so that resuming must restore it too.
    over = {"max_epochs": EPOCHS, "workers": 1, "max_minutes": 10000.0, "ema_decay": 0.9}
    runs = {}
    for name in ("killed", "whole"):
        (tmp_path / name).mkdir()
        tiny_config(tmp_path / name, manifest, **over)
        runs[name] = _train_cmd(tmp_path / name / "config.json")

    cmd, env = runs["killed"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "run" / "last.pt"
    deadline = time.time() + 180
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    # Killed at once, the run is in its next epoch. (A fixed wait here let a loaded
    # machine's run finish every epoch first.)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(last)["train_state"]["epoch"]
    assert 1 <= killed_at < EPOCHS, "the kill did not land mid-run"
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    cmd, env = runs["whole"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)

    a, b = (load_checkpoint(tmp_path / d / "run" / "last.pt") for d in ("killed", "whole"))
    assert a["train_state"]["epoch"] == b["train_state"]["epoch"] == EPOCHS
    assert a["train_state"]["step"] == b["train_state"]["step"]
    for part in ("model_state", "ema_state"):
        for key, value in b[part].items():
            assert torch.allclose(a[part][key], value, atol=1e-6), (part, key)
    val = [[h["val"] for h in c["train_state"]["history"]] for c in (a, b)]
    assert json.dumps(val[0], sort_keys=True) == json.dumps(val[1], sort_keys=True)


def test_checkpoint_cut_short_by_a_kill_is_never_loaded(tmp_path, monkeypatch):
    manifest = make_corpus(tmp_path / "corpus")
    train_mod.train(train_mod.load_config(None, tiny_config(tmp_path, manifest, max_epochs=1)))
    last = tmp_path / "run" / "last.pt"
    good = last.read_bytes()

    real_save = torch.save

    def dies_half_way(obj, path):
        real_save(obj, path)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
        raise SystemExit("killed while writing")  # stands for SIGKILL: nothing after runs

    monkeypatch.setattr(checkpoint_mod.torch, "save", dies_half_way)
    with pytest.raises(SystemExit):
        train_mod.train(train_mod.load_config(None, tiny_config(tmp_path, manifest,
                                                                max_epochs=2)))
    monkeypatch.setattr(checkpoint_mod.torch, "save", real_save)
    assert last.read_bytes() == good  # the half-written one is only ever the .tmp
    assert (tmp_path / "run" / "last.pt.tmp").exists()

    # The next run resumes from the complete checkpoint, ignoring the .tmp.
    train_mod.train(train_mod.load_config(None, tiny_config(tmp_path, manifest, max_epochs=2)))
    state = load_checkpoint(last)["train_state"]
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]


def test_truncated_last_checkpoint_is_refused_not_loaded(tmp_path, capsys):
    manifest = make_corpus(tmp_path / "corpus")
    train_mod.train(train_mod.load_config(None, tiny_config(tmp_path, manifest, max_epochs=1)))
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    status = train_mod.main(["--config", str(tmp_path / "config.json"),
                             "--set", "max_epochs=2"])
    err = capsys.readouterr().err
    assert status == 2
    assert f"checkpoint {last} cannot be read" in err and "Traceback" not in err
    assert last.stat().st_size == 1000  # left for the user to delete, not overwritten
