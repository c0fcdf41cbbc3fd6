"""Several processes, interruptions, bad data, bad options and untrusted checkpoints."""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vidgen_nb import Config, builtin_dataset
from vidgen_nb.data import scan_image_folder
from vidgen_nb.train import build_parser, config_for
from vidgen_nb.checkpoint import load_checkpoint
from vidgen_nb.trainer import Trainer

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return builtin_dataset(tmp_path_factory.mktemp("data"), per_class=4, size=16)


def train_cmd(*args):
    return [sys.executable, "-m", "vidgen_nb.train", "--preset", "tiny", "--quiet", *args]


# ---------------------------------------------------------------- DDP


def test_ddp_two_cpu_processes_agree_and_only_rank0_writes(tmp_path, data):
    out = tmp_path / "run"
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "vidgen_nb.train",
           "--preset", "tiny", "--steps", "4", "--data", str(data), "--out", str(out),
           "--device", "cpu", "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 processes: weights identical on every rank: True" in res.stdout
    assert res.stdout.count("done: step 4") == 1  # rank 0 alone reports
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "critic" in r] == [4]  # written once, not per rank
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt", "config.json", "losses.png", "metrics.jsonl", "reconstructions.png", "samples",
        "samples.png", "videos.gif"]

    more = subprocess.run([*cmd[:-7], "--steps", "6", "--data", str(data), "--out", str(out),
                           "--resume", "auto", "--device", "cpu", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert more.returncode == 0, more.stderr[-3000:]
    assert "weights identical on every rank: True" in more.stdout
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 6


def test_ddp_with_too_few_images_for_every_process_is_one_line_from_rank_0(tmp_path, data):
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "vidgen_nb.train",
           "--preset", "tiny", "--batch-size", "10", "--data", str(data), "--out", str(tmp_path / "run"),
           "--device", "cpu", "--quiet"]  # 16 images: one batch of 10, not two
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert res.stderr.count("16 usable images, fewer than batch_size=10 x 2 processes") == 1, res.stderr[-3000:]
    assert "DatasetError" not in res.stderr and "vidgen_nb/" not in res.stderr  # no traceback of ours


# ---------------------------------------------------------------- interruption


def wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finishes_the_step_writes_a_checkpoint_and_says_how_to_resume(tmp_path, data,
                                                                           signum, code):
    out = tmp_path / "run"
    proc = subprocess.Popen(train_cmd("--steps", "100000", "--data", str(data), "--out", str(out)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(out / "samples" / "step_000000.png")
    time.sleep(1.0)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert f"interrupted ({signal.Signals(signum).name})" in stderr
    assert f"--out {out} --resume auto --steps 100000" in stderr
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] > 0 and f"after step {state['step']};" in stderr


def checkpoint_step(path: Path) -> int:
    try:
        return load_checkpoint(path)["step"]
    except (FileNotFoundError, ValueError):
        return -1


def test_sigkill_at_random_moments_never_loses_the_run(tmp_path, data):
    """Kill -9 a real training process 3 times at random points, resuming each time."""
    out, steps, rng = tmp_path / "run", 200, random.Random(0)
    args = ("--steps", str(steps), "--data", str(data), "--out", str(out), "--checkpoint-every", "1")
    kills, reached = 0, []
    while True:
        resume = ("--resume", "auto") if (out / "checkpoint.pt").exists() else ()
        proc = subprocess.Popen(train_cmd(*args, *resume), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if kills < 3:
            target = max(checkpoint_step(out / "checkpoint.pt"), 0) + rng.randint(10, 40)
            while checkpoint_step(out / "checkpoint.pt") < target and proc.poll() is None:
                time.sleep(0.05)
            time.sleep(rng.uniform(0, 0.1))  # anywhere in a step, or in a checkpoint write
            proc.kill()  # SIGKILL: no handler runs
            kills += 1
        proc.wait(timeout=300)
        reached.append(checkpoint_step(out / "checkpoint.pt"))
        for path in out.glob("*.pt"):
            load_checkpoint(path)  # every checkpoint on disk loads
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL
    assert kills == 3 and reached[-1] == steps
    assert reached == sorted(reached) and len(set(reached)) == len(reached)  # each start progressed
    assert not list(out.glob(".*tmp*"))


# ---------------------------------------------------------------- bad data


def make_corpus(root: Path) -> tuple[set[str], set[str]]:
    """An ImageFolder of awkward files; returns (names that must load, names that must not)."""
    good, bad = set(), set()
    a, b = root / "a", root / "b" / "nested" / "deeper"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    (root / "empty_class").mkdir()

    def save(img, path, **kw):
        img.save(path, **kw)
        good.add(path.name)

    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    save(photo, a / "ok.png")
    save(photo, b / "nested_ok.png")
    save(photo.convert("CMYK"), a / "cmyk.jpg")
    save(Image.fromarray(np.full((20, 20), 40000, np.uint16)), a / "deep16.png")
    pal = Image.new("P", (20, 20), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    save(pal, a / "palette_alpha.png", transparency=0)
    save(Image.new("RGB", (1, 1), (9, 9, 9)), a / "one_pixel.png")
    locked = a / "locked.png"
    save(photo, locked)
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads anything: then it is a good file
        pass
    else:
        good.discard("locked.png")
        bad.add("locked.png")
    buf = (a / "ok.png").read_bytes()
    (a / "cut.png").write_bytes(buf[: len(buf) // 2])
    photo.save(a / "full.jpg")
    (a / "cut.jpg").write_bytes((a / "full.jpg").read_bytes()[:300])
    (a / "full.jpg").unlink()
    (a / "zero.png").write_bytes(b"")
    (a / "page.jpg").write_text("<html><body>Not found</body></html>")
    Image.new("1", (20_000, 20_000)).save(a / "bomb.png")  # 4e8 pixels, a few kB on disk
    (a / "dangling.png").symlink_to(a / "gone.png")
    with open(os.path.join(os.fsencode(a), b"caf\xe9.png"), "wb") as f:  # not UTF-8
        f.write(buf)
    good.add(os.fsdecode(b"caf\xe9.png"))
    with open(os.path.join(os.fsencode(a), b"bro\xffken.png"), "wb") as f:  # not UTF-8, and bad
        f.write(b"garbage")
    bad.add(os.fsdecode(b"bro\xffken.png"))
    bad |= {"cut.png", "cut.jpg", "zero.png", "page.jpg", "bomb.png", "dangling.png"}
    return good, bad


def test_awkward_files_are_handled_or_named(tmp_path):
    good, bad = make_corpus(tmp_path)
    report = scan_image_folder(tmp_path, skip_bad=True)
    assert {p.name for ps in report.files.values() for p in ps} == good
    assert {p.name for p in report.bad} == bad
    assert report.empty_classes == ["empty_class"]
    reasons = {p.name: why for p, why in report.bad.items()}
    assert "0 bytes" in reasons["zero.png"] and "not an image" in reasons["page.jpg"]
    assert "too large" in reasons["bomb.png"] and "not found" in reasons["dangling.png"]
    assert "truncated" in reasons["cut.png"]
    summary = report.summary()
    summary.encode("utf-8")  # printable on a UTF-8 terminal: no lone surrogates
    assert "bro\\udcffken.png" in summary


def test_training_with_skip_bad_uses_exactly_the_good_files(tmp_path):
    good, bad = make_corpus(tmp_path / "data")
    strict = subprocess.run(train_cmd("--steps", "1", "--batch-size", "2", "--data",
                                      str(tmp_path / "data"), "--out", str(tmp_path / "x")),
                            capture_output=True, text=True)
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert all(name in strict.stderr for name in ("cut.png", "zero.png", "page.jpg", "bomb.png"))
    res = subprocess.run(train_cmd("--steps", "2", "--batch-size", "2", "--skip-bad", "--data",
                                   str(tmp_path / "data"), "--out", str(tmp_path / "run")),
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"{len(good)} images" in res.stdout and f"{len(bad)} unusable files (skipped)" in res.stdout
    assert "Traceback" not in res.stderr


# ---------------------------------------------------------------- bad options, property-based


OPTION_VALUES = {
    "--preset": st.sampled_from(["tiny", "cpu", "seed", "huge", ""]),
    "--steps": st.one_of(st.integers(-3, 10**6).map(str), st.sampled_from(["x", "1.5", ""])),
    "--batch-size": st.integers(-2, 64).map(str),
    "--image-size": st.integers(-8, 300).map(str),
    "--frames": st.one_of(st.integers(-2, 40).map(str), st.just("two")),
    "--n-critic": st.integers(-1, 10).map(str),
    "--lr": st.one_of(st.floats(-1, 2).map(str), st.sampled_from(["fast", "nan", "inf"])),
    "--delta-mode": st.sampled_from(["per_sample", "batch_mean", "mean"]),
    "--targets": st.sampled_from(["decoder.out.*", "decoder.*", "encoder.0.weight", "nope", "["]),
    "--seed": st.integers(-5, 5).map(str),
    "--checkpoint-every": st.integers(-1, 5).map(str),
    "--delta-param": st.sampled_from(["dense", "channel", "lora"]),
    "--delta-source": st.sampled_from(["video", "constant", "image"]),
    "--ema-decay": st.one_of(st.floats(-1, 2).map(str), st.sampled_from(["nan", "1", "0"])),
    "--augment": st.sampled_from(["", "color", "color,translation,cutout", "flip", "color,,cutout"]),
    "--recon-sigma": st.one_of(st.floats(-1, 2).map(str), st.sampled_from(["nan", "inf", "0"])),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(OPTION_VALUES)), st.data(), max_size=6))
def test_random_options_give_a_config_or_a_clean_error(chosen):
    argv = []
    for option, draw in chosen.items():
        argv += [option, draw.draw(OPTION_VALUES[option])]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        cfg = config_for(args)
    except SystemExit as exit_:
        assert exit_.code == 2
        return
    except ValueError as err:
        assert "=" in str(err) or "expected" in str(err)  # names the field and the rule
        return
    assert isinstance(cfg, Config)


# ---------------------------------------------------------------- untrusted checkpoints


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['VIDGEN_EVIL_MARKER']}",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch, data):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("VIDGEN_EVIL_MARKER", str(marker))
    path = tmp_path / "evil.pt"
    torch.save({"config": Evil(), "step": 0}, path)
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump(Evil(), f)
    for bad in (path, tmp_path / "evil.pkl"):
        with pytest.raises(ValueError, match="was refused: it is not a plain vidgen_nb checkpoint"):
            load_checkpoint(bad)
    assert not marker.exists()  # nothing ran
    res = subprocess.run(train_cmd("--data", str(data), "--out", str(tmp_path / "o"),
                                   "--resume", str(path)), capture_output=True, text=True,
                         env=dict(os.environ, VIDGEN_EVIL_MARKER=str(marker)))
    assert res.returncode == 2 and "--resume: checkpoint" in res.stderr and "refused" in res.stderr
    assert not marker.exists()


def test_checkpoint_from_another_config_names_the_sizes_that_differ(tmp_path, data):
    small = Trainer(Config.preset("tiny"), data=data, progress=False)
    path = small.save_checkpoint(tmp_path / "small.pt")
    other = Trainer(Config.preset("tiny", latent_dim=12, num_frames=6), data=data, progress=False)
    with pytest.raises(ValueError) as err:
        other.load_state_dict(load_checkpoint(path))
    msg = str(err.value)
    assert "latent_dim: checkpoint 8, this run 12" in msg and "num_frames: checkpoint 4, this run 6" in msg
