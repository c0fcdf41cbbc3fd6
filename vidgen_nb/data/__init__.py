"""Images in: the built-in shapes dataset, robust ImageFolder loading, validation.

* ``builtin_dataset()`` (``shapes.py``) writes once and returns a real ``ImageFolder``
  tree of coloured shapes, so everything runs without downloading anything;
* ``to_rgb`` / ``load_rgb`` (``images.py``) turn any image file into 8-bit RGB;
* ``scan_image_folder()`` (``scan.py``) checks a folder before training and names every
  file it cannot use, or explains the layout it expected;
* ``data_record()`` (``record.py``) names what a run trained on, stored with the run, and
  ``open_training_data()`` opens it for a config;
* ``load_dataset()`` / ``make_loader()`` (``loading.py``) load it with torchvision's
  ``ImageFolder`` into tensors in [0, 1] (the decoder ends in a sigmoid), optionally
  decoded once into memory; ``ResumableBatchSampler`` makes resuming exact.

``python -m vidgen_nb.data {check,builtin,preview}`` is the command line (``__main__.py``).
"""

from .images import load_rgb, to_rgb
from .loading import (CheckedImageFolder, InMemoryImages, ResumableBatchSampler, SafeDataLoader,
                      UnreadableImageError, check_batch_size, endless_batches, image_transform,
                      load_dataset, make_loader)
from .record import check_record, data_record, describe_data, open_training_data, same_data
from .scan import EXPECTED_LAYOUT, IMAGE_EXTENSIONS, DatasetError, ScanReport, scan_image_folder
from .shapes import (BUILTIN_VERSION, CLASSES, builtin_background, builtin_dataset, cache_dir, is_builtin,
                     render_shape)

__all__ = [
    "BUILTIN_VERSION", "CLASSES", "EXPECTED_LAYOUT", "IMAGE_EXTENSIONS", "CheckedImageFolder",
    "DatasetError", "InMemoryImages", "ResumableBatchSampler", "SafeDataLoader", "ScanReport",
    "UnreadableImageError", "builtin_background", "builtin_dataset", "cache_dir", "check_batch_size",
    "check_record", "data_record", "describe_data", "open_training_data", "same_data",
    "endless_batches", "image_transform", "is_builtin", "load_dataset", "load_rgb", "make_loader", "render_shape",
    "scan_image_folder", "to_rgb",
]
