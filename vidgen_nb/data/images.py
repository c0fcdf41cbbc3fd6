"""Any image file to 8-bit RGB, and why a file cannot be used."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


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


# Memory an image may take while it is decoded and converted to RGB. Its header gives
# the size before any pixel is decoded; 16-bit greyscale passes through float64.
MAX_DECODED_BYTES = 512 * 2**20
BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3,
                   "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4}


class ImageTooLarge(ValueError):
    """An image whose decoding would take more memory than ``MAX_DECODED_BYTES``."""


def decoded_bytes(img: Image.Image) -> int:
    """Memory that decoding ``img`` and converting it to 8-bit RGB takes, at most."""
    w, h = img.size
    per_pixel = BYTES_PER_PIXEL.get(img.mode, 4 + 8)  # 16/32-bit modes: their value, then float64
    return w * h * (per_pixel + 4 + 3)  # the decoded pixels, an RGBA composite, the RGB result


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Open, fully decode and convert an image file to RGB (the ImageFolder loader).

    Raises ``ImageTooLarge`` from the header alone, before decoding, for an image
    that would take more than ``MAX_DECODED_BYTES``.
    """
    with open(path, "rb") as f:
        img = Image.open(f)
        if decoded_bytes(img) > MAX_DECODED_BYTES:
            raise ImageTooLarge(f"{img.size[0]} x {img.size[1]} pixels of mode {img.mode} would "
                                f"take {decoded_bytes(img) / 2**20:,.0f} MiB to decode, over the "
                                f"{MAX_DECODED_BYTES // 2**20} MiB allowed")
        img.load()
        img = ImageOps.exif_transpose(img)  # a photo stored sideways, as the camera meant it
    return to_rgb(img)


def why_unusable(exc: BaseException) -> str:
    """A short reason for an exception raised while decoding an image file."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning, ImageTooLarge)):
        return f"too large to decode safely ({exc})"
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image Pillow can read (wrong extension or corrupt header)"
    if isinstance(exc, PermissionError):
        return "no permission to read it"
    if isinstance(exc, FileNotFoundError):
        return "file not found (deleted, or a broken symbolic link)"
    return f"cannot be decoded: {exc}"  # truncated or corrupt data: OSError, SyntaxError


def check_file(path: Path) -> str | None:
    """Why ``path`` cannot be used as an image, or None if it decodes cleanly."""
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):
            return "not a regular file (a FIFO, socket or device)"
        if status.st_size == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            load_rgb(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as exc:
        return why_unusable(exc)
    return None


def printable(path) -> str:
    """A path as printable text on one line: bytes that are not UTF-8 and control
    characters (a newline in a file name) are shown as escapes."""
    text = str(path).encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
