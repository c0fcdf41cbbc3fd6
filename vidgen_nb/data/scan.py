"""Checking an ImageFolder tree before training: every file decoded once, every problem named."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from torchvision import datasets

from .images import check_file, printable

IMAGE_EXTENSIONS = datasets.folder.IMG_EXTENSIONS  # what ImageFolder accepts

EXPECTED_LAYOUT = """\
expected an ImageFolder layout, one sub-folder per class:
    {root}/
        class_a/001.png
        class_a/002.jpg
        class_b/003.png"""


class DatasetError(ValueError):
    """A dataset folder cannot be used as it is; the message says why and what to do."""


@dataclass
class ScanReport:
    """What ``scan_image_folder`` found."""

    root: Path
    files: dict[str, list[Path]]  # class -> usable image files (classes with none left out)
    bad: dict[Path, str] = field(default_factory=dict)  # unusable file -> why
    empty_classes: list[str] = field(default_factory=list)  # sub-folders with no usable image
    skipped_folders: dict[Path, str] = field(default_factory=dict)  # folder not walked -> why

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
        if self.skipped_folders:
            lines.append(f"  {len(self.skipped_folders)} folders not read:")
            lines += [f"    {printable(d)}: {why}" for d, why in sorted(self.skipped_folders.items())]
        if self.bad:
            lines.append(f"  {len(self.bad)} unusable files (skipped):")
            lines += [f"    {printable(p)}: {why}" for p, why in sorted(self.bad.items())]
        return "\n".join(lines)


def _image_files(folder: Path, reserved: set[str], walked: set[str],
                 skipped: dict[Path, str]) -> list[Path]:
    """Image files under ``folder``, sorted, walking every real folder once.

    Symbolic links are followed, as ``ImageFolder`` does, but a folder reached a second
    time (a link loop, or a link to a folder already walked) is not walked again; it is
    recorded in ``skipped`` with the reason, as is a folder that cannot be read.
    """
    found, stack = [], [folder]
    while stack:
        here = stack.pop()
        real = os.path.realpath(here)
        if real in walked or (here != folder and real in reserved):
            parent = os.path.realpath(Path(here).parent)
            inside = os.path.commonpath([real, parent]) == real  # it leads to an ancestor
            skipped[here] = ("a symbolic link loop: it leads back to " + printable(real) if inside
                             else f"already read as {printable(real)} (a symbolic link to it)")
            continue
        walked.add(real)
        try:
            with os.scandir(here) as entries:
                entries = sorted(entries, key=lambda e: e.name)
        except OSError as exc:
            skipped[here] = f"cannot be read ({exc.strerror or type(exc).__name__})"
            continue
        for entry in entries:
            if not _visible(entry.name):
                continue
            path = Path(here) / entry.name
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:
                is_dir = False
            if is_dir:
                stack.append(path)
            elif _is_image_name(entry.name):
                found.append(path)
    return sorted(found)


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
    class_dirs = _class_folders(root)
    # The dataset folder and the class folders are walked as themselves only, never
    # again through a link; every other folder at most once.
    reserved = {os.path.realpath(d) for d in (root, *class_dirs)}
    walked: set[str] = set()
    skipped: dict[Path, str] = {}
    candidates = {d.name: _image_files(d, reserved, walked, skipped) for d in class_dirs}
    unreadable = {d: why for d, why in skipped.items() if why.startswith("cannot be read")}
    if unreadable and not skip_bad:
        listing = "\n".join(f"  {printable(d)}: {why}" for d, why in sorted(unreadable.items()))
        raise DatasetError(
            f"{len(unreadable)} folders in {root} cannot be read, so their images would be left "
            f"out:\n{listing}\nmake them readable, or skip them (skip_bad=True, or --skip-bad on "
            "the command line)")
    every = [p for ps in candidates.values() for p in ps]
    with ThreadPoolExecutor(workers or min(8, (os.cpu_count() or 1) + 1)) as pool:
        bad = {p: why for p, why in zip(every, pool.map(check_file, every)) if why}
    usable = {c: [p for p in ps if p not in bad] for c, ps in candidates.items()}
    report = ScanReport(root=root, files={c: ps for c, ps in usable.items() if ps}, bad=bad,
                        empty_classes=[c for c, ps in usable.items() if not ps],
                        skipped_folders=skipped)
    _refuse_unusable(report, len(every), skip_bad)
    return report


def _class_folders(root: Path) -> list[Path]:
    """The class sub-folders of ``root``, sorted; ``DatasetError`` showing the expected
    layout for a missing folder, a file, or a folder without class sub-folders."""
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
    return class_dirs


def _refuse_unusable(report: ScanReport, found: int, skip_bad: bool) -> None:
    """``DatasetError`` when the scan leaves nothing to train on, or (unless ``skip_bad``)
    found files that cannot be decoded, naming each; ``found``: the image files seen."""
    root, bad = report.root, report.bad
    listing = "\n".join(f"  {printable(p)}: {why}" for p, why in sorted(bad.items()))
    if bad and report.num_images == 0:  # skipping them would leave nothing
        raise DatasetError(f"none of the {found} image files in {root} can be used:\n{listing}")
    if bad and not skip_bad:
        raise DatasetError(
            f"{len(bad)} of {found} image files in {root} cannot be used:\n{listing}\n"
            "fix or remove them, or skip them (skip_bad=True, or --skip-bad on the command line)")
    if report.num_images == 0:  # every class folder is empty, so all are in empty_classes
        classes = ", ".join(report.empty_classes)
        raise DatasetError(
            f"dataset folder {root} has class sub-folders ({classes}) but no image files in "
            f"them (extensions: {' '.join(IMAGE_EXTENSIONS)})\n{EXPECTED_LAYOUT.format(root=root)}")
