"""``python -m vidgen_nb.data {check,builtin,preview}``: check, create or preview datasets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from torchvision.utils import save_image

from ..commands import Parser, run_command
from ..config import BUILTIN_VARIANTS, DataConfig
from ..files import atomic_write
from .loading import make_loader
from .scan import scan_image_folder
from .shapes import builtin_dataset

PROG = "python -m vidgen_nb.data"


def save_preview(root: str | os.PathLike | None, out: str | os.PathLike, *, n: int = 32,
                 image_size: int = 64, nrow: int = 8, seed: int = 0) -> Path:
    """Save a grid of ``n`` random images from a dataset folder as a PNG."""
    loader = make_loader(root, image_size=image_size, batch_size=n, num_workers=0, seed=seed)
    x, _ = next(iter(loader))
    with atomic_write(out) as tmp:
        save_image(x, tmp, format="png", nrow=nrow, padding=2, pad_value=1.0)
    return Path(out)


def build_parser() -> Parser:
    """The sub-commands and their options."""
    parser = Parser(prog=PROG, description="Check, create or preview image datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="scan an ImageFolder tree and report what is usable")
    check.add_argument("folder", help="dataset folder with one sub-folder per class")
    check.add_argument("--skip-bad", action="store_true",
                       help="list unusable files instead of failing on them")
    builtin = sub.add_parser("builtin", help="write the built-in dataset if needed and print its folder")
    builtin.add_argument("--background", choices=BUILTIN_VARIANTS, default=DataConfig().builtin,
                         help=f"the shapes' drawing (default {DataConfig().builtin})")
    builtin.add_argument("--per-class", type=int, default=DataConfig().builtin_per_class,
                         help=f"images per class (default {DataConfig().builtin_per_class})")
    preview = sub.add_parser("preview", help="save a grid of images from a dataset")
    preview.add_argument("--data", default=None, help="dataset folder (default: built-in)")
    preview.add_argument("--out", required=True, help="PNG file to write")
    preview.add_argument("--images", type=int, default=32, help="how many images (default 32)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m vidgen_nb.data``; a dataset it cannot use (``DatasetError``) or a bad
    value ends in one line naming it and exit status 2."""
    return run_command(PROG, lambda: _main(argv), errors=(ValueError,))  # DatasetError included


def _main(argv: list[str] | None) -> int:
    """Run the sub-command the command line names."""
    args = build_parser().parse_args(argv)
    if args.command == "check":
        print(scan_image_folder(args.folder, skip_bad=args.skip_bad).summary())
    elif args.command == "builtin":
        print(builtin_dataset(per_class=args.per_class, background=args.background))
    else:
        print(save_preview(args.data, args.out, n=args.images))
    return 0


if __name__ == "__main__":
    sys.exit(main())
