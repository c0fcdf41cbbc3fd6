"""Run folders, files and data trees under faults: nothing lost, nothing hangs, one clear line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from vidgen_nb import Config, builtin_dataset
from vidgen_nb.data import DatasetError, load_dataset, scan, scan_image_folder
from vidgen_nb.files import LOCK, atomic_write, lock_folder
from vidgen_nb.media import save_gif
from vidgen_nb.render import main as render_main
from vidgen_nb.trainer import Trainer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return builtin_dataset(tmp_path_factory.mktemp("data"), per_class=4, size=16)


def tiny_tree(root, files=2):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(files):
            Image.new("RGB", (8, 8), (40 * i, 90, 200)).save(root / c / f"{i}.png")
    return root


# ---------------------------------------------------------------- data trees

SCAN = ("import sys; from vidgen_nb.data import scan_image_folder; "
        "print(scan_image_folder(sys.argv[1]).num_images)")


def scan_in_a_process(root):
    """The scan in a child process, so that a hang fails the test instead of stalling it."""
    return subprocess.run([sys.executable, "-c", SCAN, str(root)], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("link", ["self", "parent", "root"])
def test_a_symbolic_link_loop_is_walked_once_and_named(tmp_path, link):
    root = tiny_tree(tmp_path / "tree")
    target = {"self": ".", "parent": "..", "root": str(root)}[link]
    os.symlink(target, root / "a" / "loop")
    res = scan_in_a_process(root)
    assert res.returncode == 0 and res.stdout.split() == ["4"], res.stderr  # 2 classes x 2, once
    report = scan_image_folder(root)
    assert report.counts == {"a": 2, "b": 2}
    assert any("loop" in why or "already read" in why for why in report.skipped_folders.values())
    assert "folders not read" in report.summary()
    assert len(load_dataset(root, image_size=8)) == 4  # ImageFolder does not walk it again


def test_a_class_folder_linked_to_another_is_not_counted_twice(tmp_path):
    root = tiny_tree(tmp_path / "tree")
    os.symlink(root / "a", root / "c")
    report = scan_image_folder(root)
    assert report.num_images == 4 and "already read" in report.skipped_folders[root / "c"]


def test_an_unreadable_folder_is_named_not_dropped(tmp_path, monkeypatch):
    root = tiny_tree(tmp_path / "tree")
    (root / "a" / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(root / "a" / "sub" / "x.png")
    real_scandir = os.scandir

    def scandir(path):  # as chmod 0 does for anyone but root
        if os.path.basename(path) == "sub":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(scan.os, "scandir", scandir)
    with pytest.raises(DatasetError, match=r"1 folders in .* cannot be read[^\n]*\n.*sub: cannot be read "
                                           r"\(Permission denied\)"):
        scan_image_folder(root)
    report = scan_image_folder(root, skip_bad=True)
    assert report.num_images == 4 and "cannot be read" in report.skipped_folders[root / "a" / "sub"]


# ---------------------------------------------------------------- run folders


def test_a_folder_holding_a_run_is_not_overwritten(tmp_path, data):
    out = tmp_path / "run"
    Trainer(Config.preset("tiny"), data=data, out=out, progress=False).train(2)
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match="already holds a run"):
        Trainer(Config.preset("tiny"), data=data, out=out, progress=False)
    other = tmp_path / "other"
    Trainer(Config.preset("tiny"), data=data, out=other, progress=False).train(1)
    with pytest.raises(ValueError, match="already holds another run"):
        Trainer.from_checkpoint(other / "checkpoint.pt", data=data, out=out, progress=False)
    assert (out / "checkpoint.pt").read_bytes() == before
    resumed = Trainer.from_checkpoint(out / "checkpoint.pt", data=data, out=out, progress=False)
    assert resumed.step == 2


def test_a_run_folder_in_use_by_another_live_process_is_refused(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from vidgen_nb.files import lock_folder; "
                               "lock_folder(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
                               str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=f"in use by process {holder.pid}"):
            lock_folder(out)
    finally:
        holder.kill()
        holder.wait()
    lock_folder(out)  # the holder is gone: its lock is taken over
    assert (out / LOCK).read_text().split()[0] == str(os.getpid())


def test_a_torn_last_metrics_line_is_repaired_on_resume(tmp_path, data):
    out = tmp_path / "run"
    Trainer(Config.preset("tiny", log_every=1), data=data, out=out, progress=False).train(3)
    metrics = out / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"step": 4, "crit')  # a write cut short
        f.write('\n{"no step": 1}\n')
    resumed = Trainer.from_checkpoint(out / "checkpoint.pt", data=data, out=out, progress=False)
    lines = metrics.read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    assert [r["step"] for r in resumed.history] == [1, 2, 3]


# ---------------------------------------------------------------- writing files


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["keep.txt"]


def test_a_gif_that_cannot_be_written_leaves_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "keep.gif"
    save_gif(torch.rand(3, 3, 8, 8), path, fps=5)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="fps=-5"):
        save_gif(torch.rand(3, 3, 8, 8), path, fps=-5)

    def full_disk(self, data):  # the file is written a little, then the disk is full
        with open(self, "wb") as f:
            f.write(data[:6])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_gif(torch.rand(3, 3, 8, 8), path, fps=5)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["keep.gif"]


@pytest.mark.parametrize("fps", ["0", "-5", "nan", "inf", "1e9", "1e-9"])
def test_vidgen_video_refuses_a_bad_fps_before_loading(tmp_path, capsys, fps):
    assert render_main(["--checkpoint", str(tmp_path / "none.pt"), "--fps", fps]) == 2
    assert f"--fps {float(fps)}" in capsys.readouterr().err


@pytest.mark.parametrize("args, words", [
    (["--mode", "feedback", "--frames", "1"], "--frames 1: a feedback video needs at least 2 frames"),
    (["--out", "video.jpg"], "expected a .gif or .mp4 file name"),
    (["--device", "bogus"], "--device: device='bogus'"),
])
def test_vidgen_video_names_the_option_in_one_line(tmp_path, capsys, args, words):
    assert render_main(["--checkpoint", str(tmp_path / "none.pt"), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_vidgen_video_refuses_an_out_that_is_a_folder_or_under_a_file(tmp_path, capsys):
    (tmp_path / "dir.gif").mkdir()
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "dir.gif", tmp_path / "file" / "v.gif"):
        assert render_main(["--checkpoint", str(tmp_path / "none.pt"), "--out", str(out)]) == 2
        assert "a folder is in the way" in capsys.readouterr().err


# ---------------------------------------------------------------- checkpoints, one check for both commands

from vidgen_nb.train import main as train_main  # noqa: E402


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("good") / "run"
    Trainer(Config.preset("tiny"), data=data, out=out, progress=False).train(1)
    return torch.load(out / "checkpoint.pt", weights_only=True)


def _bad_shape(state):
    state["vae"]["decoder.out.weight"] = torch.zeros(1, 2, 3)


MALFORMED = {  # what is done to a good checkpoint -> words the one-line error must hold
    "no opt_g": (lambda s: s.pop("opt_g"), "opt_g is 'missing', expected an optimiser state dict"),
    "no batches_seen": (lambda s: s.pop("batches_seen"), "batches_seen is 'missing'"),
    "step abc": (lambda s: s.update(step="abc"), "step is 'abc', expected an integer >= 0"),
    "step -5": (lambda s: s.update(step=-5), "step is -5, expected an integer >= 0"),
    "extra weight": (lambda s: s["vae"].update(extra=torch.zeros(1)), "its vae does not fit"),
    "missing weight": (lambda s: s["critic"].pop("score.bias"), "its critic does not fit"),
    "wrong shape": (_bad_shape, "its vae does not fit"),
    "unknown field": (lambda s: s["config"]["train"].update(speed=3), "unexpected keyword argument 'speed'"),
    "config a list": (lambda s: s.update(config=[1, 2]), "is not a vidgen_nb checkpoint"),
    "bad rng": (lambda s: s.update(rng={"torch": torch.zeros(3)}), "rng is 'dict', expected a dict holding"),
    "no predictor": (lambda s: s.update(predictor=None), "predictor is None, expected a dict of tensors"),
    "weights not tensors": (lambda s: s.update(vae={"a": 1}), "vae is 'dict', expected a dict of tensors"),
    "image_size 1e9": (lambda s: s["config"]["model"].update(image_size=10**9), "image_size=1000000000: expected at most 1024"),
    "latent_dim 2^40": (lambda s: s["config"]["model"].update(latent_dim=2**40), "latent_dim=1099511627776: expected at most"),
    "num_frames 1e7": (lambda s: s["config"]["model"].update(num_frames=10**7), "num_frames=10000000: expected at most 512"),
    "bad opt_g": (lambda s: s.update(opt_g={"state": {}, "param_groups": []}), "its opt_g does not fit"),
    "ema wrong shape": (lambda s: s["generator_ema"].update({"vae.decoder.out.bias": torch.zeros(9)}),
                        "generator_ema does not fit"),
    "no data record": (lambda s: s.pop("data"), "data is None, expected the record of the data"),
    "data a string": (lambda s: s.update(data="shapes"), "data is 'shapes', expected the record"),
    "swd_start nan": (lambda s: s.update(swd_start={"step": 0, "swd": float("nan")}),
                      "swd_start is 'dict', expected None or"),
    "lineage not a list": (lambda s: s.update(lineage="a"), "lineage is 'a', expected a list"),
    "train_seconds negative": (lambda s: s.update(train_seconds=-1.0),
                               "train_seconds is -1.0, expected None or a finite number"),
    "seed 2^70": (lambda s: s["config"].update(seed=2**70), "seed=1180591620717411303424: expected an integer"),
    "n_critic 1e8": (lambda s: s["config"]["train"].update(n_critic=10**8), "n_critic=100000000: expected at most 100"),
}
# Entries vidgen-video reads too (it decodes with the weight average, so the trained
# copy's weights, the critic and the optimisers are not its concern).
RENDER_READS = {"step abc", "step -5", "unknown field", "config a list", "no predictor",
                "weights not tensors", "image_size 1e9", "latent_dim 2^40", "num_frames 1e7",
                "ema wrong shape", "no data record", "data a string", "lineage not a list", "seed 2^70"}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_checkpoint_is_refused_in_one_line_by_both_commands(case, good_checkpoint, data,
                                                                         tmp_path, capsys):
    import copy

    change, words = MALFORMED[case]
    state = copy.deepcopy(good_checkpoint)
    change(state)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(SystemExit) as exit_:
        train_main(["--resume", str(path), "--out", str(tmp_path / "out"), "--data", str(data)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.startswith("vidgen-train: error: --resume:"), err
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err
    if case in RENDER_READS:
        assert render_main(["--checkpoint", str(path), "--out", str(tmp_path / "v.gif")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("vidgen-video: error: --checkpoint:") and len(err.splitlines()) == 1, err


def test_a_checkpoint_whose_records_would_inflate_is_refused_before_reading(tmp_path):
    import zipfile

    from vidgen_nb.checkpoint import load_checkpoint

    path = tmp_path / "inflating.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data/0", "w") as record:  # 64 MiB of zeros, ~64 kB on disk
            for _ in range(64):
                record.write(bytes(2**20))
    assert path.stat().st_size < 2**20
    with pytest.raises(ValueError, match=r"would unpack to 64 MiB from 0.1 MiB on disk"):
        load_checkpoint(path)


def test_a_good_checkpoint_still_loads_and_its_folder_says_so(good_checkpoint, tmp_path):
    from vidgen_nb.checkpoint import load_checkpoint

    torch.save(good_checkpoint, tmp_path / "ok.pt")
    assert load_checkpoint(tmp_path / "ok.pt")["step"] == 1
    with pytest.raises(ValueError, match="is a folder holding no checkpoint.pt"):
        load_checkpoint(tmp_path)
    (tmp_path / "run").mkdir()
    torch.save(good_checkpoint, tmp_path / "run" / "checkpoint.pt")
    assert load_checkpoint(tmp_path / "run")["step"] == 1  # a run folder names its checkpoint


def test_a_checkpoint_of_an_older_format_is_one_line_saying_what_to_do(good_checkpoint, tmp_path, data,
                                                                       capsys):
    import copy

    old = copy.deepcopy(good_checkpoint)
    del old["format"]  # as written before checkpoints said their format (format 1)
    old["version"] = "0.0.9"
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(SystemExit) as exit_:
        train_main(["--resume", str(tmp_path / "old.pt"), "--out", str(tmp_path / "out"), "--data", str(data)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    from vidgen_nb.checkpoint import FORMAT

    assert f"is of format 1 (written by vidgen_nb 0.0.9); this version reads format {FORMAT}: move it away" in err
    assert render_main(["--checkpoint", str(tmp_path / "old.pt"), "--out", str(tmp_path / "v.gif")]) == 2
    assert "is of format 1" in capsys.readouterr().err


# ---------------------------------------------------------------- sizes memory cannot hold

@pytest.mark.parametrize("args, words", [
    (["--frames", "10000000"], "--frames: num_frames=10000000: expected at most 512"),
    (["--image-size", "1000000000"], "--image-size: image_size=1000000000: expected at most 1024"),
    (["--batch-size", "1000000"], "--batch-size: batch_size=1000000: expected at most 4096"),
    (["--preset", "seed", "--batch-size", "4096", "--frames", "512", "--image-size", "1024"],
     "(one training step): that would take about"),
])
def test_sizes_no_machine_can_hold_are_refused_before_allocating(args, words, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_main([*args, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and words in err and len(err.splitlines()) == 1, err


def test_vidgen_video_refuses_frames_that_would_not_fit_in_memory(tmp_path, data, capsys):
    Trainer(Config.preset("tiny"), data=data, out=tmp_path / "run", progress=False).train(1)
    code = render_main(["--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--frames",
                        "100000000", "--out", str(tmp_path / "v.gif")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--frames 100000000 x --videos 4: that would take about" in err, err
    assert not (tmp_path / "v.gif").exists()


def test_images_too_large_to_decode_are_named_from_their_header(tmp_path):
    from vidgen_nb.data.images import MAX_DECODED_BYTES, check_file

    path = tmp_path / "big.png"
    Image.new("I;16", (9000, 9000)).save(path)  # 16-bit: a few hundred kB on disk, ~1.2 GB to decode
    assert path.stat().st_size < 2**20
    reason = check_file(path)
    assert reason.startswith("too large to decode safely (9000 x 9000 pixels of mode I;16")
    assert f"{MAX_DECODED_BYTES // 2**20} MiB allowed" in reason


def test_a_long_thin_strip_is_cropped_before_it_is_resized(tmp_path):
    from vidgen_nb.data.loading import image_transform

    strip = Image.new("RGB", (1, 3_000_000), (200, 30, 30))  # resized whole: 128 x 384 million
    x = image_transform(128)(strip)
    assert x.shape == (3, 128, 128) and torch.allclose(x[0], torch.full((128, 128), 200 / 255))


# ---------------------------------------------------------------- processes, signals, stale files

def test_ddp_batch_check_counts_every_process():
    from vidgen_nb.data import check_batch_size

    six = list(range(6))
    check_batch_size(six, 3, world_size=2)
    with pytest.raises(DatasetError, match=r"6 usable images, fewer than batch_size=4 x 2 processes"):
        check_batch_size(six, 4, world_size=2)


def test_ctrl_c_before_the_first_step_or_while_drawing_is_one_line(tmp_path, data, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Trainer, "measure_swd", interrupt)
        assert train_main(["--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "a")]) == 130
    err = capsys.readouterr().err.strip()
    assert err == ("vidgen-train: interrupted before the first step; nothing was trained. "
                   "Run the same command again to start")
    with monkeypatch.context() as m:
        m.setattr(Trainer, "evaluate", interrupt)
        assert train_main(["--preset", "tiny", "--steps", "2", "--data", str(data), "--quiet",
                           "--out", str(tmp_path / "b")]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "interrupted while measuring and drawing the finished run; its checkpoint is complete" in err
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 2
    # ... and the same command with --resume auto redraws the pictures
    assert train_main(["--data", str(data), "--quiet", "--out", str(tmp_path / "b"), "--resume", "auto"]) == 0
    assert (tmp_path / "b" / "samples.png").exists()


def test_a_new_run_does_not_inherit_metrics_of_a_start_that_never_checkpointed(tmp_path, data):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 7, "swd": 1.0}\n')
    trainer = Trainer(Config.preset("tiny"), data=data, out=tmp_path / "run", progress=False)
    trainer.train(2)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert 7 not in steps and steps[-1] == 2


# ---------------------------------------------------------------- quieter wrongs, operating-system errors

def test_every_file_bad_with_skip_bad_lists_them_instead_of_saying_there_are_none(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        (tmp_path / c / "x.png").write_text("not a png")
    for skip_bad in (False, True):
        with pytest.raises(DatasetError, match=r"none of the 2 image files in .* can be used:\n  .*a/x.png: not an image"):
            scan_image_folder(tmp_path, skip_bad=skip_bad)


def test_a_fifo_is_called_what_it_is_and_a_newline_in_a_name_cannot_fake_a_line(tmp_path):
    tiny_tree(tmp_path)
    os.mkfifo(tmp_path / "a" / "pipe.png")
    (tmp_path / "b" / "evil\n  ok.png: fine.png").write_text("junk")
    report = scan_image_folder(tmp_path, skip_bad=True)
    reasons = {p.name: why for p, why in report.bad.items()}
    assert reasons["pipe.png"] == "not a regular file (a FIFO, socket or device)"
    with pytest.raises(DatasetError) as error:
        scan_image_folder(tmp_path)
    lines = str(error.value).splitlines()
    assert any("evil\\n  ok.png: fine.png: not an image" in line for line in lines)
    assert not any(line.startswith("  ok.png") for line in lines)


def test_exif_orientation_is_applied(tmp_path):
    from vidgen_nb.data import load_rgb

    img = Image.new("RGB", (8, 4), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / "photo.jpg", exif=exif)
    assert load_rgb(tmp_path / "photo.jpg").size == (4, 8)


def test_empty_or_nan_image_sets_and_zero_frames_are_named():
    from vidgen_nb import Generator
    from vidgen_nb.generated_video import delta_sweep, feedback_video, latent_walk
    from vidgen_nb.metrics import swd

    x = torch.rand(4, 3, 16, 16)
    with pytest.raises(ValueError, match="image sets of 0 and 4 images: expected at least one in each"):
        swd(x[:0], x)
    with pytest.raises(ValueError, match="the second image set holds NaN or infinite values"):
        swd(x, x.clone().fill_(float("nan")))
    generator = Generator.build(Config.preset("tiny"))
    for make in (latent_walk, delta_sweep, feedback_video):
        with pytest.raises(ValueError, match="num_frames=0: expected a positive integer"):
            make(generator, num_frames=0)
    with pytest.raises(ValueError, match="num_frames=1: a feedback video needs at least 2 frames"):
        feedback_video(generator, num_frames=1)


def test_a_checkpoint_with_nan_weights_is_refused_before_anything_is_drawn(good_checkpoint, tmp_path, capsys):
    import copy

    state = copy.deepcopy(good_checkpoint)
    state["generator_ema"]["vae.decoder.out.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    assert render_main(["--checkpoint", str(tmp_path / "nan.pt"), "--out", str(tmp_path / "v.gif")]) == 2
    assert "its generator_ema weights hold NaN or infinite values" in capsys.readouterr().err
    assert not (tmp_path / "v.gif").exists()


def test_resume_refuses_a_preset_of_other_sizes_and_honours_a_new_checkpoint_interval(tmp_path, data,
                                                                                    capsys):
    out = tmp_path / "run"
    assert train_main(["--preset", "tiny", "--steps", "1", "--data", str(data), "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train_main(["--resume", "auto", "--preset", "seed", "--data", str(data), "--out", str(out)])
    assert "--preset seed: the checkpoint" in capsys.readouterr().err
    assert train_main(["--resume", "auto", "--preset", "tiny", "--steps", "4", "--checkpoint-every", "1",
                       "--data", str(data), "--quiet", "--out", str(out)]) == 0  # the same preset: fine
    said = capsys.readouterr().out
    assert "resuming" in said and "preset" not in said.split("resuming")[1].splitlines()[1]
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["config"]["train"]["checkpoint_every"]
    assert saved == 1


def test_an_unwritable_out_or_cache_is_one_line(tmp_path, data, capsys, monkeypatch):
    import errno
    from pathlib import Path

    (tmp_path / "file").write_text("x")
    for out, words in ((tmp_path / "file" / "run", "Not a directory"), (tmp_path / "file", "File exists")):
        with pytest.raises(SystemExit):
            train_main(["--preset", "tiny", "--data", str(data), "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert err.startswith("vidgen-train: error: --out: cannot write the run folder") and words in err
    with monkeypatch.context() as m:  # a read-only file system (root writes through chmod, so simulated)
        def read_only(self, *args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        m.setattr(Path, "mkdir", read_only)
        with pytest.raises(SystemExit):
            train_main(["--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "ro")])
    assert "cannot write the run folder" in capsys.readouterr().err
    monkeypatch.setenv("VIDGEN_NB_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(SystemExit):
        train_main(["--preset", "tiny", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert "cannot write the built-in dataset into" in err and "set VIDGEN_NB_CACHE to a writable folder" in err
    assert len(err.splitlines()) == 1


def test_a_full_disk_while_saving_is_named_and_the_old_checkpoint_kept(tmp_path, data, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    out = tmp_path / "run"
    assert train_main(["--preset", "tiny", "--steps", "2", "--data", str(data), "--quiet", "--out", str(out)]) == 0
    before = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()

    def full(obj, f, *args, **kwargs):  # what torch.save says when the disk fills mid-write
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 137408 vs 137296")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 0))
    assert train_main(["--resume", "auto", "--steps", "4", "--data", str(data), "--quiet",
                       "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "checkpoint.pt: the disk is full; the last checkpoint written is kept" in err
    assert (out / "checkpoint.pt").read_bytes() == before


def test_a_path_that_is_not_utf8_prints_escaped_under_a_strict_terminal(tmp_path, data):
    out = os.fsencode(tmp_path) + b"/run-\xff"
    done = subprocess.run([sys.executable, "-m", "vidgen_nb.train", "--preset", "tiny", "--steps", "1",
                           "--data", str(data), "--quiet", "--out", os.fsdecode(out)],
                          capture_output=True, env={**os.environ, "PYTHONIOENCODING": "ascii:strict"},
                          timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert b"run-\\udcff" in done.stdout and b"Traceback" not in done.stderr
