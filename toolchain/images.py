"""Image files as the uint8 pixels a model was trained on, read by Pillow.

Each file is read as a person would see it:
- EXIF orientation is applied (a phone's portrait photo stands upright);
- 16-bit greys (PNG "I;16", "I") are scaled to 8 bits (value / 257, rounded), not clipped;
- a palette is looked up (to grey when every colour in it is grey);
- alpha is dropped, keeping the colour under it (nothing is composited);
- CMYK, YCbCr and the like become RGB; 1-bit images become 0 and 255.

Greys are one channel and colours three. A set of images is one channel when every
image is grey, else three (a grey image is repeated into three equal channels).
`--resize HxW` resizes with Pillow's bilinear filter (antialiased when shrinking);
without it, images of another size are refused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BadInput, brief

SUFFIXES = {".png", ".jpg", ".jpeg"}
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
RESAMPLING = "bilinear (Pillow, antialiased when shrinking)"


def parse_size(text: str | None) -> tuple[int, int] | None:
    """"HxW" as (height, width)."""
    if text is None:
        return None
    h, sep, w = text.lower().partition("x")
    if not (sep and h.isdigit() and w.isdigit() and 0 < int(h) <= 4096 and 0 < int(w) <= 4096):
        raise BadInput(f"--resize {text!r}: expected HEIGHTxWIDTH in pixels, such as 32x32")
    return int(h), int(w)


def _upright(im):
    from PIL import ImageOps
    return ImageOps.exif_transpose(im)


def _is_grey(im) -> bool:
    if im.mode in GREY_MODES:
        return True
    if im.mode in ("P", "PA"):
        palette = np.asarray(im.getpalette("RGB") or [], np.uint8).reshape(-1, 3)
        index = np.unique(np.asarray(im.getchannel(0) if im.mode == "PA" else im))
        used = palette[index[index < len(palette)]]
        return bool(len(used)) and bool(np.all(used == used[:, :1]))
    return False


def _pixels(im, grey: bool) -> np.ndarray:
    """(H, W) when `grey`, else (H, W, 3), uint8."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        a = np.asarray(im, dtype=np.float64)
        if a.min() < 0 or a.max() > 65535:
            raise ValueError(f"{im.mode} pixels range {a.min():g}..{a.max():g}, outside 16 bits")
        a = np.round(a / 257).astype(np.uint8)
        return a if grey else np.repeat(a[..., None], 3, axis=2)
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
    return np.asarray(im.convert("L" if grey else "RGB"), dtype=np.uint8)


def open_image(path: Path):
    """The decoded, upright Pillow image; BadInput naming the file when it cannot be read."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im.load()
            return _upright(im)
    # Pillow's PNG reader raises SyntaxError for a corrupt chunk, and some readers EOFError
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError,
            Image.DecompressionBombError) as e:
        raise BadInput(f"cannot read image {path} ({brief(e)})") from None


def to_array(images: list[tuple[Path, object]], channels: int | None = None,
             size: tuple[int, int] | None = None, resize: tuple[int, int] | None = None) -> np.ndarray:
    """(path, image) pairs as one uint8 (N, H, W, C) array. `channels` is the model's (1 or
    3), else decided by the images. Every image must be `size` (H, W) (the first image's
    when None) unless `resize` is given, which every image is resized to."""
    from PIL import Image
    if channels is None:
        channels = 1 if all(_is_grey(im) for _, im in images) else 3
    out = []
    for path, im in images:
        if resize is not None:
            if im.mode in ("P", "PA", "1"):
                im = im.convert("RGBA" if im.mode == "PA" else "RGB" if im.mode == "P" else "L")
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                im = im.convert("I")
            im = im.resize((resize[1], resize[0]), Image.Resampling.BILINEAR, reducing_gap=None)
        want = resize or size or (images[0][1].size[1], images[0][1].size[0])
        if (im.size[1], im.size[0]) != tuple(want):
            first = "the model takes" if size else f"{images[0][0]} is"
            raise BadInput(f"{path} is {im.size[1]}x{im.size[0]} (HxW) but {first} {want[0]}x{want[1]}; "
                           f"pass --resize {want[0]}x{want[1]} to resize ({RESAMPLING})")
        try:
            a = _pixels(im, channels == 1)
        except ValueError as e:
            raise BadInput(f"cannot read image {path} ({e})") from None
        out.append(a[..., None] if a.ndim == 2 else a)
    return np.stack(out)


def files_in(paths) -> list[Path]:
    """The image files named, and those in the folders named (searched recursively, sorted)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in SUFFIXES and f.is_file())
            if not found:
                raise BadInput(f"{p} holds no PNG or JPEG images")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise BadInput(f"{p}: no such file or folder")
    return out
