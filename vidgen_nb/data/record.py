"""What a run trains on, stored with it, so that a resumed or reloaded run uses the
same images or says that it does not.

A record is a small dict kept in the checkpoint:

* the built-in set: ``{"builtin": background, "per_class": n, "version": BUILTIN_VERSION,
  "images": N}``: written again from these on any machine, the same bytes;
* a folder: ``{"folder": its resolved path, "images": N, "classes": [...],
  "fingerprint": ...}``, the fingerprint a hash of every file's path within the folder
  and its size, so that a folder moved elsewhere is still the same data and one whose
  files were added, removed or replaced is not.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..config import Config
from .loading import check_batch_size, load_dataset
from .shapes import BUILTIN_VERSION, builtin_dataset


def fingerprint(root: str | os.PathLike, files) -> str:
    """16 hex digits naming the list of ``files`` (paths under ``root``) and their sizes."""
    digest = hashlib.sha256()
    for path in sorted(os.path.relpath(f, root) for f in files):
        size = os.stat(os.path.join(root, path)).st_size
        digest.update(f"{path}\t{size}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def data_record(dataset, builtin=None) -> dict:
    """The record of ``dataset`` (as ``load_dataset`` returns it); ``builtin``: the
    ``DataConfig`` it was written from when the run was given no folder."""
    if builtin is not None:
        return {"builtin": builtin.builtin, "per_class": builtin.builtin_per_class,
                "version": BUILTIN_VERSION, "images": len(dataset)}
    root = Path(dataset.root).resolve()
    return {"folder": str(root), "images": len(dataset), "classes": list(dataset.classes),
            "fingerprint": fingerprint(root, [f for f, _ in dataset.samples])}


def same_data(a: dict, b: dict) -> bool:
    """Whether two records name the same images (a folder may have moved)."""
    keys = ("per_class", "version") if "builtin" in a else ("classes", "fingerprint")
    return all(a.get(k) == b.get(k) for k in ("builtin", "images", *keys))


def describe_data(record: dict) -> str:
    """A record in words, for messages and summaries."""
    if "builtin" in record:
        return (f"the built-in shapes ({record['builtin']} backgrounds, {record['per_class']} a class, "
                f"version {record['version']})")
    return f"{record['folder']} ({record['images']} images, fingerprint {record['fingerprint']})"


def check_record(record, path) -> dict:
    """``record`` when it is a data record; ``ValueError`` naming the checkpoint ``path``."""
    builtin = isinstance(record, dict) and isinstance(record.get("builtin"), str) \
        and isinstance(record.get("per_class"), int)
    folder = isinstance(record, dict) and isinstance(record.get("folder"), str) \
        and isinstance(record.get("fingerprint"), str) and isinstance(record.get("classes"), list)
    if not (builtin or folder) or not isinstance(record.get("images"), int):
        shown = type(record).__name__ if not isinstance(record, (str, type(None))) else repr(record)
        raise ValueError(f"checkpoint {path}: data is {shown}, expected the record of the data it "
                         "was trained on (a built-in set or a folder)")
    return record


def open_training_data(config: Config, data=None, *, world_size: int = 1, skip_bad: bool = False,
                       verbose: bool = False):
    """What a run of ``config`` trains on: (the folder, the dataset, its record).

    ``data``: an ImageFolder tree, or None for the built-in set ``config.data`` asks for
    (written on first use). ``ValueError`` when the batch cannot be filled or a
    conditional model's ``num_classes`` is not the data's.
    """
    m, t = config.model, config.train
    builtin = config.data if data is None else None
    if data is None:
        data = builtin_dataset(background=builtin.builtin, per_class=builtin.builtin_per_class)
    dataset = load_dataset(data, image_size=m.image_size, in_memory=t.in_memory,
                           num_workers=t.num_workers, skip_bad=skip_bad, verbose=verbose)
    check_batch_size(dataset, config.batch_size, world_size)
    classes = getattr(dataset, "classes", None) or []
    if m.num_classes and m.num_classes != len(classes):
        raise ValueError(f"num_classes={m.num_classes}: the data has {len(classes)} classes "
                         f"({', '.join(classes)}); a conditional model needs as many")
    return data, dataset, data_record(dataset, builtin)
