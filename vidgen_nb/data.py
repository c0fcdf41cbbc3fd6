"""Images in: the built-in shapes dataset, robust ImageFolder loading, validation.

Three pieces, used by the trainer and the notebooks alike:

* ``builtin_dataset()`` writes (once) and returns a real ``ImageFolder`` tree of
  coloured shapes, so everything runs without downloading anything;
* ``scan_image_folder()`` checks a folder before training and names every file it
  cannot use, or explains the layout it expected;
* ``make_loader()`` loads it with torchvision's ``ImageFolder`` into tensors in
  [0, 1] (the decoder ends in a sigmoid), optionally decoded once into memory.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import datasets, transforms

IMAGE_EXTENSIONS = datasets.folder.IMG_EXTENSIONS  # what ImageFolder accepts
CLASSES = ("circle", "square", "triangle", "star")
BUILTIN_VERSION = 1  # bump when the generator changes, so caches are rebuilt

EXPECTED_LAYOUT = """\
expected an ImageFolder layout, one sub-folder per class:
    {root}/
        class_a/001.png
        class_a/002.jpg
        class_b/003.png"""


class DatasetError(ValueError):
    """A dataset folder cannot be used as it is; the message says why and what to do."""


# --------------------------------------------------------------------------------------
# The built-in dataset
# --------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where the kit keeps generated data: ``$VIDGEN_NB_CACHE``, else the XDG cache."""
    if "VIDGEN_NB_CACHE" in os.environ:
        return Path(os.environ["VIDGEN_NB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vidgen_nb"


def _background(rng: random.Random, size: int) -> np.ndarray:
    """A smooth two-colour gradient in a random direction, with faint stripes."""
    c0 = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    c1 = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    t = (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) * 0.9 + 0.5
    stripes = rng.uniform(0, 12) * np.sin(2 * math.pi * rng.uniform(2, 8) * t)
    img = c0 + np.clip(t, 0, 1)[..., None] * (c1 - c0) + stripes[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)  # (H, W, 3)


def _shape_points(kind: str, cx: float, cy: float, r: float, rot: float) -> list:
    """Polygon vertices of a square, triangle or five-pointed star."""
    if kind == "square":
        radii, n = [r] * 4, 4
    elif kind == "triangle":
        radii, n = [r] * 3, 3
    else:  # star: alternate outer and inner radius
        radii, n = [r if i % 2 == 0 else 0.45 * r for i in range(10)], 10
    return [
        (cx + radii[i] * math.cos(rot + 2 * math.pi * i / n),
         cy + radii[i] * math.sin(rot + 2 * math.pi * i / n))
        for i in range(n)
    ]


def render_shape(kind: str, rng: random.Random, size: int = 128) -> Image.Image:
    """One RGB image of a coloured ``kind`` shape on a random gradient background.

    Drawn at twice the size and downsampled, which smooths the edges.
    """
    if kind not in CLASSES:
        raise ValueError(f"kind={kind!r} is not a built-in class; choose from {CLASSES}")
    big = 2 * size
    img = Image.fromarray(_background(rng, big))
    draw = ImageDraw.Draw(img)
    r = rng.uniform(0.18, 0.32) * big
    cx, cy = (rng.uniform(r, big - r) for _ in range(2))
    fill = tuple(rng.randint(0, 255) for _ in range(3))
    outline = tuple(255 - c for c in fill)
    width = rng.randint(0, 6)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill, outline=outline, width=width)
    else:
        points = _shape_points(kind, cx, cy, r, rng.uniform(0, 2 * math.pi))
        draw.polygon(points, fill=fill, outline=outline, width=width)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def _is_complete(root: Path, manifest: dict) -> bool:
    try:
        found = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if found != manifest:
        return False
    return all(
        len(list((root / c).glob("*.png"))) == manifest["per_class"] for c in manifest["classes"]
    )


def builtin_dataset(
    root: str | os.PathLike | None = None, *, per_class: int = 100, size: int = 128, seed: int = 0
) -> Path:
    """Return the folder of the built-in shapes dataset, writing it first if needed.

    The tree is ``root/<class>/<index>.png`` for the classes in ``CLASSES``
    (``per_class`` images each, ``size`` x ``size`` RGB PNG). The same seed gives the
    same bytes. A folder that is missing, incomplete or made with other settings is
    rebuilt; a complete one is reused as it is. Writing goes to a temporary folder that
    is renamed into place, so an interrupted run never leaves a half-written dataset.
    """
    if per_class < 1 or size < 8:
        raise ValueError(f"per_class={per_class}, size={size}: need per_class >= 1, size >= 8")
    if root is None:
        root = cache_dir() / f"shapes-v{BUILTIN_VERSION}-{size}px-{per_class}x{len(CLASSES)}-seed{seed}"
    root = Path(root)
    manifest = dict(version=BUILTIN_VERSION, classes=list(CLASSES), per_class=per_class,
                    size=size, seed=seed)
    if _is_complete(root, manifest):
        return root

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for k, kind in enumerate(CLASSES):
            (tmp / kind).mkdir()
            # One generator per class: adding images to one class leaves the others alone.
            rng = random.Random(seed * 1000 + k)
            for i in range(per_class):
                render_shape(kind, rng, size).save(tmp / kind / f"{i:04d}.png", optimize=False)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


# --------------------------------------------------------------------------------------
# Decoding any image to RGB
# --------------------------------------------------------------------------------------


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow image to 8-bit RGB.

    Transparent pixels (RGBA, LA, palette with transparency) are composited over
    ``background``; 16-bit and 32-bit greyscale is scaled to 8 bits rather than clipped
    (Pillow's plain ``convert("RGB")`` turns most 16-bit images white).
    """
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        if img.mode == "F" and a.max() <= 1.0:
            top = 1.0
        img = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        canvas = Image.new("RGBA", img.size, background + (255,))
        img = Image.alpha_composite(canvas, img)
    return img.convert("RGB") if img.mode != "RGB" else img


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open, fully decode and convert an image file to RGB (the ImageFolder loader)."""
    with open(path, "rb") as f:
        img = Image.open(f)
        img.load()
    return to_rgb(img)


def _why_unusable(exc: BaseException) -> str:
    """A short reason for an exception raised while decoding an image file."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"too large to decode safely ({exc})"
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image Pillow can read (wrong extension or corrupt header)"
    if isinstance(exc, PermissionError):
        return "no permission to read it"
    if isinstance(exc, FileNotFoundError):
        return "file not found (deleted, or a broken symbolic link)"
    return f"cannot be decoded: {exc}"  # truncated or corrupt data: OSError, SyntaxError


def _check_file(path: Path) -> str | None:
    """Why ``path`` cannot be used as an image, or None if it decodes cleanly."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            load_rgb(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        return _why_unusable(exc)
    return None


# --------------------------------------------------------------------------------------
# Validation before training
# --------------------------------------------------------------------------------------


@dataclass
class ScanReport:
    """What ``scan_image_folder`` found."""

    root: Path
    files: dict[str, list[Path]]  # class -> usable image files (classes with none left out)
    bad: dict[Path, str] = field(default_factory=dict)  # unusable file -> why
    empty_classes: list[str] = field(default_factory=list)  # sub-folders with no usable image

    @property
    def counts(self) -> dict[str, int]:
        """Usable images per class."""
        return {c: len(ps) for c, ps in self.files.items()}

    @property
    def num_images(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """A short human-readable report."""
        lines = [f"{self.root}: {self.num_images} usable images in {len(self.files)} classes"]
        width = max((len(c) for c in self.files), default=0)
        lines += [f"  {c:<{width}}  {n}" for c, n in self.counts.items()]
        if self.empty_classes:
            lines.append(f"  classes without images (ignored): {', '.join(self.empty_classes)}")
        if self.bad:
            lines.append(f"  {len(self.bad)} unusable files (skipped):")
            lines += [f"    {_show(p)}: {why}" for p, why in sorted(self.bad.items())]
        return "\n".join(lines)


def _show(path) -> str:
    """A path as printable text, even when its name is not valid UTF-8."""
    return str(path).encode("utf-8", "backslashreplace").decode("utf-8")


def _visible(name: str) -> bool:
    return not name.startswith(".")  # skips .ipynb_checkpoints, macOS ._ files, ...


def _is_image_name(name: str) -> bool:
    return _visible(name) and name.lower().endswith(IMAGE_EXTENSIONS)


def scan_image_folder(
    root: str | os.PathLike, *, skip_bad: bool = False, workers: int | None = None
) -> ScanReport:
    """Check an ImageFolder tree before training, decoding every image once.

    Args:
        root: folder with one sub-folder per class; folders nested inside a class are
            searched too, as ``ImageFolder`` does. Hidden files and folders are ignored.
        skip_bad: report unusable files instead of failing; the loader leaves them out.
        workers: threads used to decode (Pillow releases the GIL while decoding).

    Returns:
        A ``ScanReport`` with the usable images per class and the unusable files.

    Raises:
        DatasetError: the folder is missing or not an ImageFolder tree, holds no usable
            image, or (unless ``skip_bad``) holds files that cannot be decoded; the
            message names every such file, or shows the expected layout.
    """
    root = Path(root)
    layout = EXPECTED_LAYOUT.format(root=root)
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist\n{layout}")
    if not root.is_dir():
        raise DatasetError(f"dataset path {root} is a file, not a folder\n{layout}")
    entries = sorted(root.iterdir())
    class_dirs = [d for d in entries if d.is_dir() and _visible(d.name)]
    loose = [p for p in entries if p.is_file() and _is_image_name(p.name)]
    if not class_dirs:
        if loose:
            raise DatasetError(
                f"dataset folder {root} holds {len(loose)} images but no class sub-folders\n"
                f"{layout}\nmove the images into a sub-folder, e.g. {root / 'images'}/")
        raise DatasetError(f"dataset folder {root} is empty\n{layout}")

    candidates = {
        d.name: sorted(Path(dirpath) / name
                       for dirpath, dirnames, names in os.walk(d, followlinks=True)
                       if not any(part.startswith(".") for part in Path(dirpath).relative_to(d).parts)
                       for name in names if _is_image_name(name))
        for d in class_dirs
    }
    every = [p for ps in candidates.values() for p in ps]
    with ThreadPoolExecutor(workers or min(8, (os.cpu_count() or 1) + 1)) as pool:
        bad = {p: why for p, why in zip(every, pool.map(_check_file, every)) if why}
    usable = {c: [p for p in ps if p not in bad] for c, ps in candidates.items()}
    report = ScanReport(root=root, files={c: ps for c, ps in usable.items() if ps}, bad=bad,
                        empty_classes=[c for c, ps in usable.items() if not ps])
    if bad and not skip_bad:
        listing = "\n".join(f"  {_show(p)}: {why}" for p, why in sorted(bad.items()))
        raise DatasetError(
            f"{len(bad)} of {len(every)} image files in {root} cannot be used:\n{listing}\n"
            "fix or remove them, or skip them (skip_bad=True, or --skip-bad on the command line)")
    if report.num_images == 0:
        raise DatasetError(
            f"dataset folder {root} has class sub-folders ({', '.join(candidates)}) but no "
            f"image files in them (extensions: {' '.join(IMAGE_EXTENSIONS)})\n{layout}")
    return report


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def image_transform(image_size: int) -> transforms.Compose:
    """PIL RGB image -> float tensor (3, image_size, image_size) in [0, 1]."""
    return transforms.Compose([
        transforms.Resize(image_size, antialias=True),  # shorter side -> image_size
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),  # uint8 [0, 255] -> float [0, 1]
    ])


class UnreadableImageError(DatasetError):
    """An image that passed the scan could not be read later (changed on disk)."""


class CheckedImageFolder(datasets.ImageFolder):
    """torchvision ``ImageFolder`` over exactly the files a ``ScanReport`` found usable.

    Classes are the report's (hidden and empty folders left out). A file that fails to
    load later raises ``UnreadableImageError`` naming it.
    """

    def __init__(self, report: ScanReport, image_size: int):
        self._classes = list(report.files)
        good = {os.path.normpath(p) for ps in report.files.values() for p in ps}
        super().__init__(str(report.root), transform=image_transform(image_size), loader=load_rgb,
                         is_valid_file=lambda p: os.path.normpath(p) in good)

    def find_classes(self, directory):
        return self._classes, {c: i for i, c in enumerate(self._classes)}

    def __getitem__(self, index: int):
        path, _ = self.samples[index]
        try:
            return super().__getitem__(index)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise UnreadableImageError(f"{_show(path)}: {_why_unusable(exc)}") from None


class SafeDataLoader(DataLoader):
    """A DataLoader whose worker errors reach the user as one clean line.

    PyTorch re-raises an exception from a worker process with the worker's whole
    traceback pasted into the message; this keeps only our own message.
    """

    def __iter__(self):
        iterator = super().__iter__()
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except UnreadableImageError as exc:
                message = str(exc).rstrip().rsplit("UnreadableImageError: ", 1)[-1]
                raise UnreadableImageError(message) from None
            yield batch


class InMemoryImages(Dataset):
    """Images decoded once into a uint8 tensor (N, 3, H, W), served as float in [0, 1].

    Each item then costs an index and a division, so the loader is never the
    bottleneck. Memory: N x 3 x H x W bytes (400 images at 64 px: 4.9 MB).
    """

    def __init__(self, dataset: Dataset, *, batch_size: int = 64, num_workers: int = 0):
        # Own generator: decoding must not draw from the global random stream.
        chunks = list(SafeDataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                     generator=torch.Generator()))
        self.images = torch.cat([(x * 255).round_().to(torch.uint8) for x, _ in chunks])
        self.labels = torch.cat([y for _, y in chunks])
        self.classes = getattr(dataset, "classes", None)
        self.root = getattr(dataset, "root", None)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i].float().div_(255), self.labels[i]


def load_dataset(
    root: str | os.PathLike | None = None,
    *,
    image_size: int = 64,
    in_memory: bool = False,
    num_workers: int | None = None,
    skip_bad: bool = False,
    verbose: bool = False,
) -> Dataset:
    """Validate a dataset folder and return its images as a Dataset of ``(x, label)``.

    Args:
        root: an ImageFolder tree; ``None`` uses the built-in shapes dataset.
        image_size: images are resized (shorter side) and centre-cropped to this; ``x`` is
            (3, image_size, image_size), float in [0, 1].
        in_memory: decode the whole dataset once into a uint8 tensor (``InMemoryImages``).
        num_workers: processes that decode (default min(4, cores)).
        skip_bad: leave out unusable files (see ``verbose``) instead of failing.
        verbose: print the scan report (images per class, skipped files).

    Raises:
        DatasetError: the folder cannot be used (see ``scan_image_folder``).
        ValueError: a non-positive image size.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size={image_size!r}: expected a positive integer")
    report = scan_image_folder(builtin_dataset() if root is None else root, skip_bad=skip_bad)
    if verbose:
        print(report.summary())
    dataset = CheckedImageFolder(report, image_size)
    if in_memory:
        workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
        return InMemoryImages(dataset, num_workers=workers)
    return dataset


def make_loader(
    root: str | os.PathLike | None = None,
    *,
    image_size: int = 64,
    batch_size: int = 16,
    num_workers: int | None = None,
    in_memory: bool = False,
    skip_bad: bool = False,
    shuffle: bool = True,
    drop_last: bool = True,
    seed: int = 0,
    verbose: bool = False,
) -> DataLoader:
    """Validate a dataset folder and return a DataLoader of ``(x, label)`` batches.

    ``x`` is (batch_size, 3, image_size, image_size), float in [0, 1]. See
    ``load_dataset`` for the arguments they share; with ``in_memory`` the batches are
    served from the main process. Shuffling is seeded by ``seed``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected a positive integer")
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1)
    dataset = load_dataset(root, image_size=image_size, in_memory=in_memory,
                           num_workers=num_workers, skip_bad=skip_bad, verbose=verbose)
    check_batch_size(dataset, batch_size)
    if in_memory:
        num_workers = 0
    return SafeDataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
        num_workers=num_workers, persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


def check_batch_size(dataset: Dataset, batch_size: int) -> None:
    """Fail clearly when a dataset cannot fill one batch."""
    if len(dataset) < batch_size:
        root = getattr(dataset, "root", None) or "the dataset"
        raise DatasetError(f"{root} has {len(dataset)} usable images, fewer than "
                           f"batch_size={batch_size}; lower the batch size")


class ResumableBatchSampler(Sampler):
    """Endless shuffled batches of indices; batch k depends on (seed, k) alone.

    Each epoch is a fresh seeded permutation; the last incomplete batch of an epoch is
    dropped. Starting at ``start`` gives exactly the batches a run that had consumed
    ``start`` batches would see next, which makes resuming exact. With ``world_size``
    processes, rank r takes the r-th share of every global batch.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, start: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start
        self.rank, self.world_size = rank, world_size
        self.per_epoch = n // (batch_size * world_size)
        if self.per_epoch < 1:
            raise DatasetError(f"{n} usable images cannot fill one batch of {batch_size} x "
                               f"{world_size} processes; lower the batch size")

    def __iter__(self):
        k, epoch, perm = self.start, None, None
        while True:
            e, b = divmod(k, self.per_epoch)
            if e != epoch:
                epoch, perm = e, torch.randperm(self.n, generator=torch.Generator().manual_seed(
                    self.seed * 1_000_003 + e))
            i = (b * self.world_size + self.rank) * self.batch_size
            yield perm[i : i + self.batch_size].tolist()
            k += 1


def endless_batches(dataset: Dataset, sampler: ResumableBatchSampler, *, num_workers: int = 0):
    """Yield image batches (B, 3, H, W) in [0, 1] forever, in the sampler's order.

    In-memory images are gathered with one index per batch; others go through a
    ``SafeDataLoader`` with ``num_workers`` processes.
    """
    if isinstance(dataset, InMemoryImages):
        for idx in sampler:
            yield dataset.images[idx].float().div_(255)
    else:
        loader = SafeDataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                                generator=torch.Generator())  # keeps the global RNG untouched
        for x, _ in loader:
            yield x


# --------------------------------------------------------------------------------------
# Command line: python -m vidgen_nb.data {check,builtin,preview}
# --------------------------------------------------------------------------------------


def save_preview(root: str | os.PathLike | None, out: str | os.PathLike, *, n: int = 32,
                 image_size: int = 64, nrow: int = 8, seed: int = 0) -> Path:
    """Save a grid of ``n`` random images from a dataset folder as a PNG."""
    from torchvision.utils import save_image

    loader = make_loader(root, image_size=image_size, batch_size=n, num_workers=0, seed=seed)
    x, _ = next(iter(loader))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(x, out, nrow=nrow, padding=2, pad_value=1.0)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m vidgen_nb.data", description="Check, create or preview image datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="scan an ImageFolder tree and report what is usable")
    check.add_argument("folder", help="dataset folder with one sub-folder per class")
    check.add_argument("--skip-bad", action="store_true",
                       help="list unusable files instead of failing on them")
    sub.add_parser("builtin", help="write the built-in dataset if needed and print its folder")
    preview = sub.add_parser("preview", help="save a grid of images from a dataset")
    preview.add_argument("--data", default=None, help="dataset folder (default: built-in)")
    preview.add_argument("--out", required=True, help="PNG file to write")
    preview.add_argument("--images", type=int, default=32, help="how many images (default 32)")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            print(scan_image_folder(args.folder, skip_bad=args.skip_bad).summary())
        elif args.command == "builtin":
            print(builtin_dataset())
        else:
            print(save_preview(args.data, args.out, n=args.images))
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
