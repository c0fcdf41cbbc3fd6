"""Run folders, files and data trees under faults: nothing lost, nothing hangs, one clear line."""

import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from vidgen_nb import Config, builtin_dataset
from vidgen_nb.data import DatasetError, load_dataset, scan, scan_image_folder
from vidgen_nb.files import LOCK, atomic_write, lock_folder
from vidgen_nb.media import save_gif
from vidgen_nb.render import main as render_main
from vidgen_nb.training import Trainer


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

    def full_disk(self, fp, *args, **kwargs):  # writes a little, then the disk is full
        with open(fp, "wb") as f:
            f.write(b"GIF89a")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_gif(torch.rand(3, 3, 8, 8), path, fps=5)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["keep.gif"]


@pytest.mark.parametrize("fps", ["0", "-5", "nan", "inf"])
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
