"""A resumed, forked or reloaded run means what it meant: the data stored with the run,
summaries from what the run holds, bounded loops, and one line for each bad input."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from vidgen_nb import Config, builtin_dataset
from vidgen_nb.checkpoint import load_checkpoint
from vidgen_nb.notebook import load_or_train
from vidgen_nb.train import main as train_main
from vidgen_nb.trainer import Trainer


def folder(root, n=4, colour=None):
    """An ImageFolder tree of two classes, n images each (all alike with ``colour``)."""
    for k, c in enumerate(("a", "b")):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (16, 16), colour or (30 * i, 90 + 60 * k, 200)).save(root / c / f"{i}.png")
    return root


def tiny(out, data, *more):
    return ["--preset", "tiny", "--steps", "2", "--batch-size", "4", "--quiet", "--out", str(out),
            "--data", str(data), *more]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-step run on a folder of its own (not the built-in shapes)."""
    root = tmp_path_factory.mktemp("meaning")
    data = folder(root / "data")
    assert train_main(tiny(root / "run", data)) == 0
    return root / "run", data


def refused(capsys, argv, *words):
    with pytest.raises(SystemExit) as stop:
        train_main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


def test_the_run_records_its_folder_and_resumes_on_it_without_data(run, tmp_path, capsys):
    out, data = run
    record = load_checkpoint(out / "checkpoint.pt")["data"]
    assert record["folder"] == str(data.resolve()) and record["images"] == 8
    fork = tmp_path / "fork"
    assert train_main(["--resume", str(out), "--out", str(fork), "--steps", "3", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert f"forking {out / 'checkpoint.pt'} at step 2" in said and "8 images" in said
    assert "a fork of" in said
    state = load_checkpoint(fork / "checkpoint.pt")
    assert state["lineage"] == [{"checkpoint": str((out / "checkpoint.pt").resolve()), "step": 2}]
    assert state["swd_start"] == load_checkpoint(out / "checkpoint.pt")["swd_start"]


def test_other_data_on_resume_is_refused_naming_both_unless_asked(run, tmp_path, capsys):
    out, data = run
    other = folder(tmp_path / "other", n=5)
    err = refused(capsys, ["--resume", str(out), "--out", str(tmp_path / "f"), "--data", str(other)],
                  str(data.resolve()), str(other.resolve()), "--other-data")
    assert not (tmp_path / "f" / "checkpoint.pt").exists(), err
    assert train_main(["--resume", str(out), "--out", str(tmp_path / "g"), "--data", str(other),
                       "--other-data", "--steps", "3", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "going on with other data" in said and "SWD at step 2 " in said
    assert load_checkpoint(tmp_path / "g" / "checkpoint.pt")["swd_start"]["step"] == 2


def test_a_recorded_folder_that_changed_or_went_is_refused(run, tmp_path, capsys):
    out, data = run
    moved = tmp_path / "moved"
    os.rename(data, moved)
    try:
        refused(capsys, ["--resume", str(out), "--out", str(tmp_path / "f")], "not there any more")
        assert train_main(["--resume", str(out), "--out", str(tmp_path / "m"), "--data", str(moved),
                           "--steps", "3", "--quiet"]) == 0  # the same files elsewhere: the same data
        Image.new("RGB", (16, 16)).save(moved / "a" / "new.png")
        refused(capsys, ["--resume", str(out), "--out", str(tmp_path / "h"), "--data", str(moved)],
                "9 images")
    finally:
        (moved / "a" / "new.png").unlink(missing_ok=True)
        os.rename(moved, data)


def test_load_or_train_uses_the_runs_data_and_refuses_a_wrong_path(run, tmp_path, capsys, monkeypatch):
    out, data = run
    monkeypatch.delenv("VIDGEN_NB_FAST", raising=False)
    trainer = load_or_train(out / "checkpoint.pt")
    assert len(trainer.dataset) == 8 and trainer.judge is None
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_or_train(tmp_path / "nowhere.pt")


def test_the_start_swd_is_the_checkpoints_not_the_logs(run, tmp_path, capsys):
    out, data = run
    start = load_checkpoint(out / "checkpoint.pt")["swd_start"]["swd"]
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes())
    (copy / "metrics.jsonl").write_text('{"step": 0, "swd": 9.0}\n{"step": 1, "critic": "x"}\n')
    assert train_main(["--resume", "auto", "--out", str(copy), "--steps", "3", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert f"SWD {start:.4f} ->" in captured.out and "9.0000" not in captured.out
    assert "left out line 2" in captured.err and "Traceback" not in captured.err
    assert load_checkpoint(copy / "checkpoint.pt")["config"]["train"]["steps"] == 3


def test_fewer_steps_than_done_is_refused_and_the_api_total_grows(run, tmp_path, capsys):
    out, data = run
    refused(capsys, ["--resume", "auto", "--out", str(out), "--steps", "1"], "already at step 2")
    trainer = Trainer.from_checkpoint(out / "checkpoint.pt", out=tmp_path / "api", progress=False)
    trainer.train(np.int64(2))  # numpy integers are integers
    assert trainer.step == 4 and trainer.config.train.steps == 4
    assert json.loads((tmp_path / "api" / "config.json").read_text())["train"]["steps"] == 4


@pytest.mark.parametrize("args, words", [
    (["--n-critic", "100000000"], "n_critic=100000000: expected at most 100"),
    (["--seed", str(2**70)], "expected an integer in 0..2147483647"),
    (["--seed", "-1"], "seed=-1"),
    (["--data", ""], "--data: an empty path"),
    (["--data", "x" * 300], "--data: "),
    (["--out", "y" * 300], "--out: "),
    (["--out", "/tmp/" + "z/" * 2100], "the system allows"),
    (["--resume", "r" * 300], "--resume: "),
])
def test_bad_values_are_one_line_and_leave_no_folder(args, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = refused(capsys, ["--preset", "tiny", *args], words)
    assert "a name of 300 bytes" in err or "300" not in str(args)
    assert not (tmp_path / "runs").exists()


def test_a_fifo_or_a_dangling_link_is_called_what_it_is(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe")
    refused(capsys, ["--resume", str(tmp_path / "pipe"), "--out", str(tmp_path / "o")], "a FIFO")
    os.symlink(tmp_path / "gone", tmp_path / "link")
    refused(capsys, ["--preset", "tiny", "--out", str(tmp_path / "link")], "symbolic link", "does not exist")
    assert not (tmp_path / "gone").exists()


def test_identical_images_give_a_summary_not_a_division_by_zero(tmp_path, capsys):
    data = folder(tmp_path / "same", colour=(120, 40, 200))
    assert train_main(tiny(tmp_path / "run", data)) == 0
    said = capsys.readouterr().out
    assert "the data's images are all alike" in said


def test_api_misuse_is_named(tmp_path):
    from vidgen_nb.generator import Generator
    from vidgen_nb.widgets import LatentExplorer, VideoExplorer

    with pytest.raises(TypeError, match="expected a Config"):
        Trainer("tiny")
    with pytest.raises(ValueError, match="num_frames=100: expected an integer in 2..32"):
        VideoExplorer(torch.rand(3, 16, 16), num_frames=100)
    for bad in (None, [1, 2]):
        with pytest.raises(TypeError, match="image: expected a tensor"):
            VideoExplorer(bad)
        with pytest.raises(TypeError, match="model: expected a Generator or VAE"):
            LatentExplorer(bad)
    trainer = Trainer(Config.preset("tiny"), data=builtin_dataset(tmp_path / "d", per_class=4, size=16),
                      progress=False)
    for z in (torch.randn(2, 3, 8), torch.randn(0, 8)):
        with pytest.raises(ValueError, match="z: expected noise vectors"):
            trainer.generator.generate(z)
    assert isinstance(trainer.generator, Generator)


def test_the_builtin_writer_removes_a_killed_writers_folder_and_names_a_full_cache(tmp_path, monkeypatch):
    from vidgen_nb.data import __main__ as data_cli, shapes

    root = tmp_path / "cache" / "shapes"
    abandoned = tmp_path / "cache" / ".shapes.999999999.x1"  # a writer long gone
    abandoned.mkdir(parents=True)
    builtin_dataset(root, per_class=2, size=16)
    assert not abandoned.exists() and (root / "manifest.json").exists()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shapes, "_write", full)
    with pytest.raises(ValueError, match="cannot write the built-in dataset into .*: the disk is full"):
        builtin_dataset(tmp_path / "cache" / "other", per_class=2, size=16)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["shapes"]  # no temporary folder left
    monkeypatch.setenv("VIDGEN_NB_CACHE", str(tmp_path / "cache2"))
    assert data_cli.main(["builtin"]) != 0


def test_vidgen_experiment_out_a_file_or_too_long_is_one_line(tmp_path, capsys):
    from vidgen_nb.experiments import main as experiment_main

    (tmp_path / "f").write_text("x")
    for out, words in ((tmp_path / "f", "is a file"), (tmp_path / ("q" * 300), "a name of 300 bytes")):
        with pytest.raises(SystemExit) as stop:
            experiment_main(["--preset", "tiny", "--steps", "1", "--seeds", "0", "--out", str(out)])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and words in err and "Traceback" not in err, err


# ---------------------------------------------------------------- signals and full disks at the edges


def resumed(run, tmp_path, steps):
    """A fork of the module's run, to train on to ``steps`` (its own folder, so tests stay apart)."""
    out, _ = run
    return ["--resume", str(out), "--out", str(tmp_path / "fork"), "--steps", str(steps), "--quiet",
            "--checkpoint-every", "1"]


def test_a_second_signal_abandons_the_step_and_keeps_the_last_checkpoint(run, tmp_path, capsys, monkeypatch):
    import signal

    real_step, calls, before = Trainer.train_step, [], signal.getsignal(signal.SIGTERM)

    def step_then_signal_twice(self):
        calls.append(self.step)
        if len(calls) == 2:  # during the fork's second step: SIGTERM, then SIGTERM again
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)
            raise AssertionError("the second signal did not stop the step")
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step_then_signal_twice)
    assert train_main(resumed(run, tmp_path, 6)) == 143
    err = capsys.readouterr().err.strip()
    assert "SIGTERM twice: step 4 was left unfinished" in err, err
    assert f"the last checkpoint, {tmp_path / 'fork' / 'checkpoint.pt'}, holds the run" in err
    assert "Traceback" not in err
    assert load_checkpoint(tmp_path / "fork" / "checkpoint.pt")["step"] == 3  # step 3 finished, kept
    assert signal.getsignal(signal.SIGTERM) is before  # the training loop's handler is gone again


SIGTERM_AT = """
import signal, sys
import vidgen_nb.train as t

def terminated(*args, **kwargs):
    signal.raise_signal(signal.SIGTERM)
    raise AssertionError("SIGTERM did not stop vidgen-train")

setattr(t.Trainer if hasattr(t.Trainer, sys.argv[1]) else t, sys.argv[1], terminated)
sys.exit(t.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("patched, words", [
    ("measure_swd", "SIGTERM before the first step; nothing was trained"),
    ("finish_run", "SIGTERM while measuring and drawing the finished run; its checkpoint is complete"),
])
def test_sigterm_outside_the_loop_is_one_line_143_and_releases_the_lock(run, tmp_path, patched, words):
    """A real process (the lock goes when it exits), SIGTERM raised in setup or in drawing."""
    import subprocess
    import sys

    fork = tmp_path / "fork"  # a new run measures its starting SWD in setup, a fork does not
    argv = tiny(fork, run[1]) if patched == "measure_swd" else resumed(run, tmp_path, 3)
    done = subprocess.run([sys.executable, "-c", SIGTERM_AT, patched, *argv],
                          capture_output=True, text=True, timeout=300)
    err = done.stderr.strip()
    assert done.returncode == 143 and words in err and len(err.splitlines()) == 1, err
    assert fork.exists() and not (fork / ".lock").exists()
    if patched == "finish_run":  # the run is whole: it redraws without training again
        assert load_checkpoint(fork / "checkpoint.pt")["step"] == 3
        assert train_main(["--out", str(fork), "--resume", "auto", "--quiet"]) == 0
        assert (fork / "samples.png").exists() and load_checkpoint(fork / "checkpoint.pt")["step"] == 3


def test_a_full_disk_while_drawing_the_final_pictures_is_one_line(run, tmp_path, capsys, monkeypatch):
    from vidgen_nb import train as train_module

    def full(video, path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(train_module, "save_gif", full)
    assert train_main(resumed(run, tmp_path, 3)) == 1
    err = capsys.readouterr().err.strip()
    assert f"cannot write {tmp_path / 'fork' / 'videos.gif'}: the disk is full; the run's checkpoint is " \
           "complete" in err and len(err.splitlines()) == 1, err
    assert load_checkpoint(tmp_path / "fork" / "checkpoint.pt")["step"] == 3


@pytest.mark.parametrize("run_main", [False, True], ids=["no runs/main", "runs/main"])
@pytest.mark.parametrize("option", ["--checkpoint", "--out"])
def test_vidgen_video_paths_longer_than_the_system_allows_are_one_line(tmp_path, capsys, monkeypatch,
                                                                       option, run_main):
    from vidgen_nb.render import main as video_main

    monkeypatch.chdir(tmp_path)  # with or without a runs/main: the error is the only line either way
    if run_main:
        (tmp_path / "runs" / "main").mkdir(parents=True)
        (tmp_path / "runs" / "main" / "checkpoint.pt").touch()
    long = str(tmp_path / ("v" * 300)) + ".gif"
    assert video_main([option, long]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vidgen-video: error: {option}") and "a name of " in err, err
    assert len(err.splitlines()) == 1


def test_a_read_only_cache_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    from vidgen_nb.data import __main__ as data_cli, shapes

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(shapes, "_write", read_only)
    with pytest.raises(ValueError, match="cannot write the built-in dataset into .*: Read-only file system; "
                                         "set VIDGEN_NB_CACHE to a writable folder"):
        builtin_dataset(tmp_path / "cache" / "shapes", per_class=2, size=16)
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.setenv("VIDGEN_NB_CACHE", str(tmp_path / "cache"))
    assert data_cli.main(["builtin"]) != 0


def test_a_fork_of_a_fork_names_both_and_keeps_the_first_start(run, tmp_path, capsys):
    out, _ = run
    first, second = tmp_path / "first", tmp_path / "second"
    assert train_main(["--resume", str(out), "--out", str(first), "--steps", "3", "--quiet"]) == 0
    assert train_main(["--resume", str(first), "--out", str(second), "--steps", "4", "--quiet"]) == 0
    said = capsys.readouterr().out
    state = load_checkpoint(second / "checkpoint.pt")
    assert [f["step"] for f in state["lineage"]] == [2, 3]
    assert f"a fork of {(out / 'checkpoint.pt').resolve()} at step 2" in said
    assert f"a fork of {(first / 'checkpoint.pt').resolve()} at step 3" in said
    assert state["swd_start"] == load_checkpoint(out / "checkpoint.pt")["swd_start"]


def test_resuming_at_the_total_trains_nothing_and_reports_the_stored_start(run, tmp_path, capsys):
    out, _ = run
    copy = tmp_path / "copy"
    assert train_main(["--resume", str(out), "--out", str(copy), "--quiet"]) == 0  # a fork at 2 of 2
    before = load_checkpoint(copy / "checkpoint.pt")
    start = before["swd_start"]["swd"]
    assert train_main(["--resume", "auto", "--out", str(copy), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "done: step 2" in said and f"SWD {start:.4f} ->" in said
    after = load_checkpoint(copy / "checkpoint.pt")
    assert after["step"] == 2 and after["config"]["train"]["steps"] == 2


def test_a_builtin_run_refuses_another_variant_or_a_folder_on_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIDGEN_NB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert train_main(["--preset", "tiny", "--steps", "1", "--batch-size", "4", "--builtin-per-class", "4",
                       "--builtin", "dark", "--quiet", "--out", str(out)]) == 0
    record = load_checkpoint(out / "checkpoint.pt")["data"]
    assert record["builtin"] == "dark" and record["per_class"] == 4
    refused(capsys, ["--resume", "auto", "--out", str(out), "--builtin", "gradient"],
            "builtin='dark'", "builtin='gradient'", "a resumed run keeps its settings")
    refused(capsys, ["--resume", "auto", "--out", str(out), "--data", str(folder(tmp_path / "f"))],
            "the built-in shapes", str((tmp_path / "f").resolve()))
    assert train_main(["--resume", "auto", "--out", str(out), "--steps", "2", "--quiet"]) == 0
