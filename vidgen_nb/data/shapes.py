"""The built-in dataset: coloured shapes, written as an ImageFolder tree.

Generated, never downloaded: 4 classes (circle, square, triangle, star), each image a
filled shape drawn at twice the size and downsampled, in one of three variants
(``BUILTIN_VARIANTS``), from the easiest to learn to the hardest:

* ``centred``: a large bright shape in the middle of a near-black plain image (its
  centre jittered by up to 6% of the width, its radius 28-38%), as MNIST centres and
  scales its digits: what varies is the shape, its colour, size and rotation;
* ``dark``: a bright shape anywhere on a near-black plain background, as dSprites draws
  them, its radius 18-32%: every bit of the image's contrast is the shape's;
* ``gradient``: a shape with an outline anywhere on a two-colour gradient with faint
  stripes, where most of an image's pixels are background.

The functions' ``background`` argument names the variant.

The same seed gives the same bytes.
"""

from __future__ import annotations

import errno
import json
import math
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..config import BUILTIN_VARIANTS, DataConfig, check_one_of
from ..files import process_alive

CLASSES = ("circle", "square", "triangle", "star")
# Bump when a variant's drawing changes, so caches are rebuilt and judges retrained.
# 2: the dark backgrounds, and the background's name in the manifest. (``centred``
# came later as a variant of its own: the other two draw the same bytes as in 2.)
BUILTIN_VERSION = 2
# The images a model never trains on: the same drawing with another seed, a few a class,
# to tell learned shapes from remembered images (``Trainer.evaluate``'s ``*_unseen``).
UNSEEN_SEED, UNSEEN_PER_CLASS = 1, 64


def cache_dir() -> Path:
    """Where the kit keeps generated data: ``$VIDGEN_NB_CACHE``, else the XDG cache."""
    if "VIDGEN_NB_CACHE" in os.environ:
        return Path(os.environ["VIDGEN_NB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vidgen_nb"


def _background(rng: random.Random, size: int, kind: str = "gradient") -> np.ndarray:
    """(size, size, 3) uint8: for ``gradient``, a smooth two-colour gradient in a random
    direction with faint stripes; for ``dark`` and ``centred``, one near-black colour
    (each channel < 32)."""
    if kind != "gradient":
        colour = np.array([rng.randint(0, 31) for _ in range(3)], dtype=np.uint8)
        return np.broadcast_to(colour, (size, size, 3)).copy()
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


def shape_colours(rng: random.Random, background: str) -> tuple[tuple, tuple, int]:
    """Fill, outline and outline width of a shape: on a gradient any colour, outlined in
    its complement; on a dark background a bright colour (its largest channel >= 160),
    no outline."""
    if background != "gradient":
        fill = [rng.randint(0, 255) for _ in range(3)]
        fill[rng.randrange(3)] = rng.randint(160, 255)
        return tuple(fill), tuple(fill), 0
    fill = tuple(rng.randint(0, 255) for _ in range(3))
    return fill, tuple(255 - c for c in fill), rng.randint(0, 6)


def placement(rng: random.Random, big: int, background: str, smallest: float | None = None) -> tuple:
    """Radius and centre (r, cx, cy) of a shape in an image ``big`` pixels wide: for
    ``centred`` near the middle, radius 28-38% of the width; else anywhere it fits
    whole, radius 18-32%. ``smallest`` lowers the smallest radius (the judge's specks)."""
    lo, hi = (0.28, 0.38) if background == "centred" else (0.18, 0.32)
    r = rng.uniform(lo if smallest is None else smallest, hi) * big
    if background == "centred":
        return (r, *(big / 2 + rng.uniform(-0.06, 0.06) * big for _ in range(2)))
    return (r, *(rng.uniform(r, big - r) for _ in range(2)))


def render_shape(kind: str, rng: random.Random, size: int = 128,
                 background: str = "gradient") -> Image.Image:
    """One RGB image of a coloured ``kind`` shape on a random ``background``
    (one of ``BUILTIN_VARIANTS``).

    Drawn at twice the size and downsampled, which smooths the edges.
    """
    if kind not in CLASSES:
        raise ValueError(f"kind={kind!r} is not a built-in class; choose from {CLASSES}")
    check_one_of("background", background, BUILTIN_VARIANTS)
    big = 2 * size
    img = Image.fromarray(_background(rng, big, background))
    draw = ImageDraw.Draw(img)
    r, cx, cy = placement(rng, big, background)
    fill, outline, width = shape_colours(rng, background)
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


def builtin_background(root: str | os.PathLike) -> str | None:
    """The background of a folder ``builtin_dataset`` wrote (at any size, count or seed),
    read from its manifest; None for any other folder. The shape judge of that
    background knows what such a folder shows."""
    try:
        found = json.loads((Path(root) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(found, dict) and found.get("version") == BUILTIN_VERSION \
            and found.get("classes") == list(CLASSES) and found.get("background") in BUILTIN_VARIANTS:
        return found["background"]
    return None


def is_builtin(root: str | os.PathLike) -> bool:
    """True for a folder ``builtin_dataset`` wrote (``builtin_background`` names its background)."""
    return builtin_background(root) is not None


def builtin_dataset(
    root: str | os.PathLike | None = None, *, per_class: int | None = None, size: int = 128,
    seed: int = 0, background: str | None = None,
) -> Path:
    """Return the folder of the built-in shapes dataset, writing it first if needed.

    The tree is ``root/<class>/<index>.png`` for the classes in ``CLASSES``
    (``per_class`` images each, ``size`` x ``size`` RGB PNG, on ``background``; both
    default to ``DataConfig``'s, as a run without ``--data`` uses them). The same seed gives the
    same bytes. A folder that is missing, incomplete or made with other settings is
    rebuilt; a complete one is reused as it is. Writing goes to a temporary folder that
    is renamed into place, so an interrupted run never leaves a half-written dataset.
    """
    defaults = DataConfig()
    per_class = defaults.builtin_per_class if per_class is None else per_class
    background = defaults.builtin if background is None else background
    if per_class < 1 or size < 8:
        raise ValueError(f"per_class={per_class}, size={size}: need per_class >= 1, size >= 8")
    check_one_of("background", background, BUILTIN_VARIANTS)
    if root is None:
        root = cache_dir() / (f"shapes-v{BUILTIN_VERSION}-{background}-{size}px-"
                              f"{per_class}x{len(CLASSES)}-seed{seed}")
    root = Path(root)
    manifest = dict(version=BUILTIN_VERSION, classes=list(CLASSES), background=background,
                    per_class=per_class, size=size, seed=seed)
    if _is_complete(root, manifest):
        return root

    def cannot(exc: OSError):
        full = exc.errno == errno.ENOSPC
        reason = "the disk is full; free space there" if full else exc.strerror or exc
        return ValueError(f"cannot write the built-in dataset into {root.parent}: {reason}; "
                          f"{'or ' if full else ''}set VIDGEN_NB_CACHE to a writable folder")

    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(root)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.{os.getpid()}.", dir=root.parent))
    except OSError as exc:
        raise cannot(exc) from None
    try:
        _write(tmp, manifest, per_class, size, seed, background)
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    except OSError as exc:
        raise cannot(exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _remove_abandoned(root: Path) -> None:
    """Delete the temporary folders of writers of ``root`` that were killed mid-write
    (named ``.<root>.<pid>.*``; those of a writer still running stay)."""
    for stale in root.parent.glob(f".{root.name}.*"):
        pid = stale.name[len(root.name) + 2:].split(".")[0]
        if stale.is_dir() and (not pid.isdigit() or not process_alive(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)


def _write(tmp: Path, manifest: dict, per_class: int, size: int, seed: int, background: str) -> None:
    """The dataset's files into the folder ``tmp``."""
    for k, kind in enumerate(CLASSES):
        (tmp / kind).mkdir()
        # One generator per class: adding images to one class leaves the others alone.
        rng = random.Random(seed * 1000 + k)
        for i in range(per_class):
            render_shape(kind, rng, size, background).save(tmp / kind / f"{i:04d}.png", optimize=False)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
