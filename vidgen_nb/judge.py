"""A judge of shapes: how many generated images show a shape one can name.

SWD compares small patches, so a generator can lower it with the right colours and soft
blobs alone (docs/training.md). The judge asks what a person asks of a sample grid: is
that a circle, a square, a triangle or a star? A small CNN learns the question from
freshly drawn built-in images (a seed of its own, never the training set's) and from
twice as many that show no nameable shape, which is what a generator's failures look
like: backgrounds alone, shapes blurred until the outline is gone or pixelated to a few
blocks, smooth colour fields, irregular polygons. Its figures:

* ``shapes_named``: the share of images it names a shape with probability >= 0.9;
* ``shape_counts``: how many of those it names circle, square, triangle, star;
* ``shapes_named_real``: the same share for real images, the most a generator can
  expect (as ``swd_floor`` is for SWD).

A judge knows one of the built-in backgrounds (``ShapeJudge.background``): its shapes
and its "no shape" images are drawn on it. The judge is a measuring instrument, not part
of the seed's model, so it uses what classifies best (BatchNorm, two convolutions per
block). Judges for both backgrounds at 16 and 32 px ship with the kit
(``vidgen_nb/data/judge-<background>-<size>px.pt``, written by ``python -m vidgen_nb.judge``
in about four and a half minutes on a 2-core CPU at 32 px); for another size, the same
command trains one into the cache folder, and a run measures shapes whenever a judge for
its size and background exists.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter
from torch import nn

from .commands import Parser, run_command
from .data.loading import image_transform
from .config import BUILTIN_VARIANTS, DataConfig, check_one_of
from .data.shapes import BUILTIN_VERSION, CLASSES, _background, cache_dir, placement, render_shape, shape_colours
from .files import atomic_write

JUDGE_VERSION = 1  # bump when the judge or its training changes; old files are then not used
NONE = "no shape"  # the fifth label (``_no_shape``)
LABELS = (*CLASSES, NONE)
CONFIDENT = 0.9  # the probability at which a shape counts as named
DRAW_SIZE = 128  # the built-in files' size: images are drawn at it and resized as the loader does
# Gaussian blur radii, as fractions of the image side: a shape blurred up to SOFT (1 px
# at 32 px) is still one a person names; from BLUR (2.2 px) on, its outline is gone.
SOFT, BLUR = 0.03, 0.07
SEED = 7_777  # drawing and training seed (the built-in dataset draws with seeds 0 to 3)
SHIPPED = Path(__file__).parent / "data"


class ShapeJudge(nn.Module):
    """Blocks of two Conv2d/BatchNorm2d/ReLU and a MaxPool2d, global average pooling,
    then a Linear to the five ``LABELS``; it judges images of ``image_size`` px drawn
    on the built-in ``background``."""

    def __init__(self, image_size: int, background: str = "gradient", widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        check_one_of("background", background, BUILTIN_VARIANTS)
        self.image_size, self.background = image_size, background
        layers, c_in = [], 3
        for w in widths:
            for _ in range(2):
                layers += [nn.Conv2d(c_in, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
                c_in = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classify = nn.Linear(c_in, len(LABELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> logits (B, 5) over ``LABELS``."""
        return self.classify(self.features(x * 2 - 1).mean((2, 3)))


def _mottle(img: Image.Image, rng: random.Random) -> Image.Image:
    """Half the time, add blocks of coloured noise (1, 2 or 4 px at 32 px), as a
    generator's texture: on shapes and non-shapes alike, so noise itself names nothing."""
    if rng.random() < 0.5:
        return img
    cells = rng.choice((32, 16, 8))
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(5, 30), (cells, cells, 3))
    noise = np.kron(noise, np.ones((DRAW_SIZE // cells, DRAW_SIZE // cells, 1)))
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))


def _blob(rng: random.Random, background: str) -> Image.Image:
    """A filled polygon of 5 to 9 corners at random radii (no built-in shape), from a
    speck to the dataset's largest size, drawn as ``render_shape`` draws."""
    big = 2 * DRAW_SIZE
    img = Image.fromarray(_background(rng, big, background))
    r, cx, cy = placement(rng, big, background, smallest=0.04)
    n, rot = rng.randint(5, 9), rng.uniform(0, 2 * math.pi)
    points = [(cx + rng.uniform(0.4, 1) * r * math.cos(rot + 2 * math.pi * k / n),
               cy + rng.uniform(0.4, 1) * r * math.sin(rot + 2 * math.pi * k / n)) for k in range(n)]
    fill, outline, width = shape_colours(rng, background)
    ImageDraw.Draw(img).polygon(points, fill=fill, outline=outline, width=width)
    return img.resize((DRAW_SIZE, DRAW_SIZE), Image.Resampling.LANCZOS)


def _no_shape(i: int, rng: random.Random, background: str) -> Image.Image:
    """An image with nothing one could name, in turn: a background alone, a blurred
    shape, a shape pixelated to a few blocks, a few colours smoothly blended, and an
    irregular polygon (``_blob``)."""
    kind, shape = i % 5, CLASSES[i // 5 % len(CLASSES)]
    if kind == 0:
        return Image.fromarray(_background(rng, 2 * DRAW_SIZE, background)).resize(
            (DRAW_SIZE, DRAW_SIZE), Image.Resampling.LANCZOS)
    if kind == 1:
        radius = rng.uniform(BLUR, 2 * BLUR) * DRAW_SIZE
        return render_shape(shape, rng, DRAW_SIZE, background).filter(ImageFilter.GaussianBlur(radius))
    if kind == 2:
        blocks = rng.randint(3, 6)
        return render_shape(shape, rng, DRAW_SIZE, background).resize((blocks, blocks), Image.Resampling.BOX) \
            .resize((DRAW_SIZE, DRAW_SIZE), Image.Resampling.NEAREST)
    if kind == 3:
        cells = rng.randint(2, 5)
        colours = np.array([[[rng.randint(0, 255) for _ in range(3)] for _ in range(cells)]
                            for _ in range(cells)], np.uint8)
        return Image.fromarray(colours).resize((DRAW_SIZE, DRAW_SIZE), Image.Resampling.BICUBIC)
    return _blob(rng, background)


def draw_labelled(per_class: int, image_size: int, seed: int = SEED,
                  background: str = "gradient") -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` images of each shape, twice as many of "no shape", all on
    ``background``, as the loader gives them, and their labels.

    Shapes come from the built-in dataset's own ``render_shape``, every other one
    softened by a blur of up to ``SOFT``; "no shape" images from ``_no_shape``; any of
    them may carry noise (``_mottle``).
    """
    rng, transform = random.Random(seed), image_transform(image_size)
    images, labels = [], []
    for label, kind in enumerate(LABELS):
        for i in range(per_class * (2 if kind == NONE else 1)):  # "no shape" has five kinds
            if kind == NONE:
                img = _no_shape(i, rng, background)
            else:
                img = render_shape(kind, rng, DRAW_SIZE, background)
                if i % 2:  # a softened outline keeps its name
                    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0, SOFT) * DRAW_SIZE))
            images.append(transform(_mottle(img, rng)))
            labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def train_judge(image_size: int, background: str = "gradient", *, per_class: int = 600,
                epochs: int = 15, seed: int = SEED, progress: bool = False) -> ShapeJudge:
    """Draw a labelled set on ``background`` and fit a ``ShapeJudge`` to it (one-cycle
    Adam, mirrored copies)."""
    x, y = draw_labelled(per_class, image_size, seed, background)
    torch.manual_seed(seed)
    judge = ShapeJudge(image_size, background)
    batches = (len(x) + 63) // 64
    opt = torch.optim.Adam(judge.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=epochs * batches)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            flip = torch.rand(len(idx), generator=g) < 0.5  # a mirrored shape keeps its name
            batch = torch.where(flip[:, None, None, None], x[idx].flip(3), x[idx])
            loss = F.cross_entropy(judge(batch), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        if progress:
            print(f"  epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}", flush=True)
    return judge.eval().requires_grad_(False)


def judge_path(image_size: int, background: str = "gradient", folder: Path | None = None) -> Path:
    """Where the judge for ``image_size`` and ``background`` is kept: in ``folder``, by
    default the cache."""
    name = f"judge-{background}-{image_size}px.pt"
    return (cache_dir() / f"judge-v{JUDGE_VERSION}-data{BUILTIN_VERSION}" if folder is None else folder) / name


def save_judge(judge: ShapeJudge, path: Path) -> None:
    """Write a judge with the versions it was made under (read back by ``load_judge``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        torch.save({"judge_version": JUDGE_VERSION, "data_version": BUILTIN_VERSION,
                    "image_size": judge.image_size, "background": judge.background,
                    "state": judge.state_dict()}, tmp)


def load_judge(image_size: int, background: str = "gradient") -> ShapeJudge | None:
    """The judge for ``image_size`` and ``background``: the one shipped with the kit,
    else one trained into the cache folder, else None. A file of other versions is
    passed over. Torch's random stream is left as it was (a run that loads a judge
    trains as one that does not)."""
    for path in (judge_path(image_size, background, SHIPPED), judge_path(image_size, background)):
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            continue
        if (stored["judge_version"], stored["data_version"], stored["image_size"], stored.get("background")) \
                == (JUDGE_VERSION, BUILTIN_VERSION, image_size, background):
            with torch.random.fork_rng(devices=[]):  # the layers' initial draws are discarded
                judge = ShapeJudge(image_size, background)
            judge.load_state_dict(stored["state"])
            return judge.eval().requires_grad_(False)
    return None


@torch.no_grad()
def judge_shapes(judge: ShapeJudge, images: torch.Tensor, asked: torch.Tensor | None = None,
                 classes: tuple = CLASSES) -> dict:
    """``shapes_named`` (a share in [0, 1]) and ``shape_counts`` (a list over ``CLASSES``).

    With ``asked`` (B,), the class each image was generated as (an index into
    ``classes``, the data's class names, each one of ``CLASSES``), also
    ``named_as_asked``: the share of images named as the class asked;
    ``as_asked_of_named``: that share among the named ones (nan if none is named); and
    ``named_per_class`` / ``as_asked_per_class``: both shares per class asked, over
    ``classes``.
    """
    if tuple(images.shape[-2:]) != (judge.image_size, judge.image_size):
        raise ValueError(f"images of {tuple(images.shape[-2:])} px: this judge was trained at "
                         f"{judge.image_size} x {judge.image_size}")
    with torch.autocast("cpu", enabled=False):  # the same verdict under a trainer's bf16
        p = torch.cat([judge(x).softmax(1) for x in images.float().cpu().split(256)])
    best, label = p.max(1)
    named = (best >= CONFIDENT) & (label < len(CLASSES))
    counts = np.bincount(label[named].numpy(), minlength=len(LABELS))[:len(CLASSES)]
    figures = {"shapes_named": named.float().mean().item(), "shape_counts": counts.tolist()}
    if asked is None:
        return figures
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"classes {unknown}: the judge knows only {CLASSES}")
    asked = asked.cpu()
    want = torch.tensor([CLASSES.index(c) for c in classes])[asked]
    hit = named & (label == want)
    share = [(named[asked == k].float().mean().item(), hit[asked == k].float().mean().item())
             for k in range(len(classes))]
    figures.update(named_as_asked=hit.float().mean().item(),
                   as_asked_of_named=(hit.sum() / named.sum()).item() if named.any() else math.nan,
                   named_per_class=[a for a, _ in share], as_asked_per_class=[b for _, b in share])
    return figures


def main(argv: list[str] | None = None) -> int:
    """``python -m vidgen_nb.judge``: train a judge, report it on fresh images, save it."""
    parser = Parser(
        prog="python -m vidgen_nb.judge",
        description="Train the shape judge for an image size and report how well it names "
                    "fresh real images and blurred ones.")
    parser.add_argument("--size", type=int, default=32, help="image size in pixels (default 32)")
    parser.add_argument("--background", choices=BUILTIN_VARIANTS, default=DataConfig().builtin,
                        help=f"the built-in drawing it judges (default {DataConfig().builtin})")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder to write judge-<background>-<size>px.pt into (default: the cache folder)")

    def body() -> int:
        args = parser.parse_args(argv)
        if not 8 <= args.size <= 256:
            parser.error(f"--size {args.size}: expected a size from 8 to 256 pixels")
        judge = train_judge(args.size, args.background, progress=True)
        x, y = draw_labelled(100, args.size, SEED + 1, args.background)  # images it never saw
        for label, kind in enumerate(LABELS):
            print(f"  fresh {kind}: {judge_shapes(judge, x[y == label])}")
        path = judge_path(args.size, args.background, args.out)
        save_judge(judge, path)
        print(f"wrote {path}")
        return 0

    return run_command(parser.prog, body)


if __name__ == "__main__":
    sys.exit(main())
