"""The data layer: built-in dataset, conversion to RGB, validation, loading."""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidgen_nb import data
from vidgen_nb.data import DatasetError, builtin_dataset, load_rgb, make_loader, scan_image_folder


def digest(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def save_png(path: Path, size=(16, 16), color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


# ---------------------------------------------------------------- built-in dataset


def test_builtin_default_size_and_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDGEN_NB_CACHE", str(tmp_path))
    root = builtin_dataset()
    assert root.parent == tmp_path
    report = scan_image_folder(root)
    assert report.counts == {c: 100 for c in data.CLASSES}
    assert report.num_images >= 300 and len(report.counts) >= 3
    with Image.open(root / "star" / "0007.png") as img:
        assert img.size == (128, 128) and img.mode == "RGB"


def test_builtin_is_deterministic(tmp_path):
    a = builtin_dataset(tmp_path / "a", per_class=6, size=32, seed=3)
    b = builtin_dataset(tmp_path / "b", per_class=6, size=32, seed=3)
    c = builtin_dataset(tmp_path / "c", per_class=6, size=32, seed=4)
    assert digest(a) == digest(b)
    assert len(digest(a)) == 6 * len(data.CLASSES) + 1  # images + manifest
    shared = digest(a).keys() - {"manifest.json"}
    assert all(digest(a)[k] != digest(c)[k] for k in shared)


def test_a_builtin_folder_is_known_by_its_manifest(tmp_path):
    root = builtin_dataset(tmp_path / "b", per_class=1, size=8, seed=5)
    assert data.is_builtin(root) and not data.is_builtin(tmp_path)
    manifest = root / "manifest.json"
    manifest.write_text(manifest.read_text().replace(f'"version": {data.BUILTIN_VERSION}', '"version": 0'))
    assert '"version": 0' in manifest.read_text() and not data.is_builtin(root)  # another version's shapes: not what the judge learned
    manifest.write_text("[1, 2")
    assert not data.is_builtin(root)


def test_both_backgrounds_are_written_and_known_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDGEN_NB_CACHE", str(tmp_path))
    dark = builtin_dataset(per_class=3, size=32, background="dark")
    gradient = builtin_dataset(per_class=3, size=32, background="gradient")
    assert dark != gradient and "dark" in dark.name and "gradient" in gradient.name  # cached apart
    assert (data.builtin_background(dark), data.builtin_background(gradient)) == ("dark", "gradient")
    pixels = {b: np.stack([np.asarray(Image.open(p)) for p in sorted(root.rglob("*.png"))])
              for b, root in (("dark", dark), ("gradient", gradient))}
    corners = {b: x[:, [0, 0, -1, -1], [0, -1, 0, -1]] for b, x in pixels.items()}  # background pixels
    assert corners["dark"].max() < 32 and corners["gradient"].mean() > 64
    assert pixels["dark"].max(axis=(1, 2, 3)).min() >= 150  # every shape bright against it
    with pytest.raises(ValueError, match=r"background='grey': expected one of \('centred', 'dark', 'gradient'\)"):
        builtin_dataset(tmp_path / "x", background="grey")
    out = subprocess.run([sys.executable, "-m", "vidgen_nb.data", "builtin", "--per-class", "0"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "per_class=0" in out.stderr and "Traceback" not in out.stderr


def test_centred_shapes_are_large_and_in_the_middle_of_a_dark_image(tmp_path):
    def bright(root):  # per image: the shape's pixels (any channel over 100)
        return [np.asarray(Image.open(p)).max(2) > 100 for p in sorted(root.rglob("*.png"))]

    centred = bright(builtin_dataset(tmp_path / "c", per_class=25, size=64, background="centred"))
    anywhere = bright(builtin_dataset(tmp_path / "d", per_class=25, size=64, background="dark"))
    yy, xx = np.mgrid[0:64, 0:64]
    for mask in centred:  # its centre of mass within the jitter (6% of 64 px) and a pixel or two
        assert abs(xx[mask].mean() - 31.5) < 6 and abs(yy[mask].mean() - 31.5) < 6
    off = [max(abs(xx[m].mean() - 31.5), abs(yy[m].mean() - 31.5)) for m in anywhere]
    assert max(off) > 10  # the dark variant's shapes go anywhere
    assert np.mean([m.mean() for m in centred]) > 1.5 * np.mean([m.mean() for m in anywhere])


def test_builtin_reused_when_complete_and_rebuilt_when_not(tmp_path):
    root = builtin_dataset(tmp_path / "d", per_class=4, size=16)
    before = digest(root)
    stamp = (root / "circle" / "0000.png").stat().st_mtime_ns
    assert builtin_dataset(root, per_class=4, size=16) == root
    assert (root / "circle" / "0000.png").stat().st_mtime_ns == stamp  # not rewritten

    (root / "square" / "0002.png").unlink()  # incomplete -> rebuilt
    builtin_dataset(root, per_class=4, size=16)
    assert digest(root) == before

    builtin_dataset(root, per_class=5, size=16)  # other settings -> rebuilt
    assert scan_image_folder(root).counts == {c: 5 for c in data.CLASSES}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


# ---------------------------------------------------------------- loading


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return builtin_dataset(tmp_path_factory.mktemp("shapes"), per_class=5, size=48)


@pytest.mark.parametrize("in_memory", [False, True])
def test_loader_shapes_and_range(shapes, in_memory):
    loader = make_loader(shapes, image_size=32, batch_size=8, num_workers=1, in_memory=in_memory)
    batches = list(loader)
    assert len(batches) == 20 // 8  # drop_last
    x, y = batches[0]
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.05
    assert y.dtype == torch.long and set(y.tolist()) <= set(range(len(data.CLASSES)))


def test_in_memory_gives_the_same_images(shapes):
    kw = dict(image_size=24, batch_size=20, shuffle=False, drop_last=False)
    x_disk, y_disk = next(iter(make_loader(shapes, num_workers=0, **kw)))
    x_mem, y_mem = next(iter(make_loader(shapes, in_memory=True, **kw)))
    assert torch.equal(y_disk, y_mem)
    assert (x_disk - x_mem).abs().max() <= 0.5 / 255 + 1e-6  # uint8 rounding only


def test_resize_and_crop_non_square(tmp_path):
    save_png(tmp_path / "a" / "wide.png", size=(90, 30))
    x, _ = next(iter(make_loader(tmp_path, image_size=20, batch_size=1, num_workers=0)))
    assert x.shape == (1, 3, 20, 20)
    assert torch.allclose(x[0, :, 10, 10], torch.tensor([200, 30, 30]) / 255, atol=1e-3)


# ---------------------------------------------------------------- conversion to RGB


def test_grayscale_to_rgb(tmp_path):
    Image.new("L", (8, 8), 77).save(tmp_path / "g.png")
    img = load_rgb(tmp_path / "g.png")
    assert img.mode == "RGB" and img.getpixel((3, 3)) == (77, 77, 77)


def test_rgba_composited_over_white(tmp_path):
    a = np.zeros((8, 8, 4), np.uint8)
    a[:4] = (10, 20, 30, 255)  # opaque top half
    a[4:] = (10, 20, 30, 0)  # transparent bottom half
    Image.fromarray(a, "RGBA").save(tmp_path / "rgba.png")
    img = load_rgb(tmp_path / "rgba.png")
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (10, 20, 30) and img.getpixel((0, 7)) == (255, 255, 255)


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (8, 8), 0)
    p.putpalette([0, 0, 0, 250, 100, 0] + [0] * 762)
    p.paste(1, (0, 0, 8, 4))
    p.save(tmp_path / "p.png")
    p.save(tmp_path / "pt.png", transparency=0)  # index 0 is transparent
    plain, transparent = load_rgb(tmp_path / "p.png"), load_rgb(tmp_path / "pt.png")
    assert plain.getpixel((0, 0)) == (250, 100, 0) and plain.getpixel((0, 7)) == (0, 0, 0)
    assert transparent.getpixel((0, 0)) == (250, 100, 0)
    assert transparent.getpixel((0, 7)) == (255, 255, 255)


def test_16bit_png_scaled_not_clipped(tmp_path):
    a = np.full((8, 8), 32768, np.uint16)
    a[:, 4:] = 65535
    Image.fromarray(a).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as raw:
        assert raw.mode.startswith("I")  # Pillow really reads it as 16-bit
    img = load_rgb(tmp_path / "deep.png")
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (128, 128, 128)  # plain convert("RGB") gives 255
    assert img.getpixel((7, 0)) == (255, 255, 255)


def test_mixed_modes_load_as_rgb_tensors(tmp_path):
    (tmp_path / "c").mkdir()
    Image.new("L", (10, 10), 9).save(tmp_path / "c" / "l.png")
    Image.new("RGBA", (10, 10), (1, 2, 3, 255)).save(tmp_path / "c" / "rgba.png")
    Image.new("CMYK", (10, 10), (0, 0, 0, 0)).save(tmp_path / "c" / "cmyk.jpg")
    Image.fromarray(np.full((10, 10), 1000, np.uint16)).save(tmp_path / "c" / "i16.png")
    x, _ = next(iter(make_loader(tmp_path, image_size=10, batch_size=4, num_workers=0)))
    assert x.shape == (4, 3, 10, 10) and 0 <= x.min() and x.max() <= 1


# ---------------------------------------------------------------- validation


def test_bad_files_all_named_in_one_error(tmp_path):
    good = save_png(tmp_path / "cls" / "good.png")
    truncated = tmp_path / "cls" / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:-30])
    save_png(tmp_path / "big.png", size=(64, 64))
    (tmp_path / "cls" / "cut.png").write_bytes((tmp_path / "big.png").read_bytes()[:80])
    (tmp_path / "big.png").unlink()
    (tmp_path / "cls" / "zero.png").write_bytes(b"")
    (tmp_path / "cls" / "notes.jpg").write_text("these are my notes, not a picture\n")

    with pytest.raises(DatasetError) as err:
        scan_image_folder(tmp_path)
    msg = str(err.value)
    assert "4 of 5 image files" in msg
    for name in ("truncated.png", "cut.png", "zero.png", "notes.jpg"):
        assert str(tmp_path / "cls" / name) in msg
    assert "good.png" not in msg
    assert "0 bytes" in msg and "--skip-bad" in msg

    report = scan_image_folder(tmp_path, skip_bad=True)
    assert report.counts == {"cls": 1} and len(report.bad) == 4
    loader = make_loader(tmp_path, image_size=8, batch_size=1, num_workers=0, skip_bad=True)
    assert len(loader.dataset) == 1


def test_empty_folder_shows_layout(tmp_path):
    with pytest.raises(DatasetError, match="is empty") as err:
        scan_image_folder(tmp_path)
    assert "one sub-folder per class" in str(err.value) and "class_a/001.png" in str(err.value)


def test_images_without_class_folders_shows_layout(tmp_path):
    save_png(tmp_path / "a.png")
    save_png(tmp_path / "b.jpg")
    with pytest.raises(DatasetError) as err:
        scan_image_folder(tmp_path)
    msg = str(err.value)
    assert "holds 2 images but no class sub-folders" in msg
    assert "one sub-folder per class" in msg and str(tmp_path / "images") in msg


def test_class_folders_without_images(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    (tmp_path / "dogs" / "readme.txt").write_text("no pictures here")
    with pytest.raises(DatasetError, match=r"class sub-folders \(cats, dogs\) but no image"):
        scan_image_folder(tmp_path)


def test_missing_path_and_file_path(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_image_folder(tmp_path / "nope")
    f = save_png(tmp_path / "x.png")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        scan_image_folder(f)


def test_empty_and_hidden_classes_are_left_out(tmp_path):
    save_png(tmp_path / "b" / "1.png")
    save_png(tmp_path / "b" / "nested" / "2.png")
    (tmp_path / "a").mkdir()  # no images
    save_png(tmp_path / ".ipynb_checkpoints" / "x.png")
    report = scan_image_folder(tmp_path)
    assert report.counts == {"b": 2} and report.empty_classes == ["a"]
    loader = make_loader(tmp_path, image_size=8, batch_size=2, num_workers=0)
    assert loader.dataset.classes == ["b"] and len(loader.dataset) == 2


def test_batch_larger_than_dataset_is_explained(tmp_path):
    save_png(tmp_path / "a" / "1.png")
    with pytest.raises(DatasetError, match="1 usable images, fewer than batch_size=4"):
        make_loader(tmp_path, image_size=8, batch_size=4)
    with pytest.raises(ValueError, match="image_size=0"):
        make_loader(tmp_path, image_size=0, batch_size=1)


def test_file_broken_after_scan_gives_clean_error_from_worker(tmp_path):
    for i in range(4):
        save_png(tmp_path / "a" / f"{i}.png")
    loader = make_loader(tmp_path, image_size=8, batch_size=2, num_workers=1, shuffle=False)
    (tmp_path / "a" / "3.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(data.UnreadableImageError) as err:
        list(loader)
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "a" / "3.png"))
    assert "Traceback" not in msg and "worker" not in msg and "\n" not in msg


# ---------------------------------------------------------------- command line


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vidgen_nb.data", *args],
                          capture_output=True, text=True, env=env)


def test_cli_check_reports_and_fails_cleanly(tmp_path, shapes):
    ok = run_cli("check", str(shapes))
    assert ok.returncode == 0 and "20 usable images in 4 classes" in ok.stdout
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "z.png").write_bytes(b"")
    bad = run_cli("check", str(tmp_path))
    assert bad.returncode == 2
    assert str(tmp_path / "a" / "z.png") in bad.stderr and "Traceback" not in bad.stderr


def test_cli_preview_writes_png(tmp_path, shapes):
    out = tmp_path / "grid.png"
    res = run_cli("preview", "--data", str(shapes), "--out", str(out), "--images", "16")
    assert res.returncode == 0, res.stderr
    with Image.open(out) as img:
        assert img.size == (8 * 66 + 2, 2 * 66 + 2)  # 8 x 2 images of 64 px, 2 px padding
