"""Loading images for training: torchvision's ImageFolder, in memory or through workers,
in batches that depend on (seed, batch number) alone so that resuming is exact."""

from __future__ import annotations

import os

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import datasets, transforms

from ..config import check_positive
from .images import load_rgb, printable, why_unusable
from .scan import DatasetError, ScanReport, scan_image_folder
from .shapes import builtin_dataset


class CenterSquare:
    """Crop a PIL image to its central square (side: the shorter side).

    Done before resizing, so that a long thin strip (1 x 3,000,000 pixels) is never
    scaled up as a whole; for any image it gives what resizing the shorter side and
    then cropping the centre gives.
    """

    def __call__(self, img):
        side = min(img.size)
        return transforms.functional.center_crop(img, [side, side])


def image_transform(image_size: int) -> transforms.Compose:
    """PIL RGB image -> float tensor (3, image_size, image_size) in [0, 1]."""
    return transforms.Compose([
        CenterSquare(),
        transforms.Resize((image_size, image_size), antialias=True),
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
        self._report = report
        super().__init__(str(report.root), transform=image_transform(image_size), loader=load_rgb)

    def find_classes(self, directory):
        classes = list(self._report.files)
        return classes, {c: i for i, c in enumerate(classes)}

    def make_dataset(self, directory, class_to_idx, *args, **kwargs):
        """(path, class index) for the report's files, in ImageFolder's order (class, then
        folder, then name), without walking the folder again: ImageFolder's own walk
        would loop forever on a symbolic-link loop."""
        return [(str(p), class_to_idx[c]) for c in sorted(class_to_idx)
                for p in sorted(self._report.files[c], key=lambda p: (str(p.parent), p.name))]

    def __getitem__(self, index: int):
        path, _ = self.samples[index]
        try:
            return super().__getitem__(index)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise UnreadableImageError(f"{printable(path)}: {why_unusable(exc)}") from None


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
        self.samples = getattr(dataset, "samples", None)  # (file, class index), as ImageFolder's

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i].float().div_(255), self.labels[i]


def classes_for(config, data, given=()):
    """``config`` with ``num_classes`` set to the class count of the folder ``data`` when
    the model is conditional and ``num_classes`` is not among the fields ``given``
    explicitly: a preset's conditional model fits any ImageFolder. Unchanged for an
    unconditional model, the built-in data (None), or a folder that cannot be listed
    (loading it names the problem)."""
    if data is None or not config.model.num_classes or "num_classes" in given:
        return config
    try:  # as torchvision's ImageFolder finds its classes: the sub-folders
        found = sum(1 for entry in os.scandir(data) if entry.is_dir())
    except OSError:
        return config
    return config.replace(num_classes=found) if found else config


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
    check_positive("image_size", image_size)
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
    check_positive("batch_size", batch_size)
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


def check_batch_size(dataset: Dataset, batch_size: int, world_size: int = 1) -> None:
    """Fail clearly when a dataset cannot fill one batch (of every process, under DDP)."""
    if len(dataset) < batch_size * world_size:
        root = getattr(dataset, "root", None) or "the dataset"
        each = f" x {world_size} processes" if world_size > 1 else ""
        raise DatasetError(f"{root} has {len(dataset)} usable images, fewer than "
                           f"batch_size={batch_size}{each}; lower the batch size")


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
    """Yield (images (B, 3, H, W) in [0, 1], labels (B,)) forever, in the sampler's order.

    In-memory images are gathered with one index per batch; others go through a
    ``SafeDataLoader`` with ``num_workers`` processes.
    """
    if isinstance(dataset, InMemoryImages):
        for idx in sampler:
            yield dataset.images[idx].float().div_(255), dataset.labels[idx]
    else:
        loader = SafeDataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                                generator=torch.Generator())  # keeps the global RNG untouched
        yield from loader
