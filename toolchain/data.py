"""Datasets by name: uint8 images (N, H, W, C), integer labels, class names, and a
fixed train/test split.

Names: `digits` (scikit-learn's bundled set, the offline default), `xor` (the four
cases of the seed's first network, as 1x2 images), `mnist` and
`fashion-mnist` (IDX files, see idx.py), `idx:DIR` (any folder of MNIST-format IDX
files), `npz:PATH`, `csv:PATH` and `folder:PATH`.
"""
from __future__ import annotations

import csv
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import idx, images, models
from .errors import BadInput, brief

# Sets that ship without a split are split once with this seed, so that every run and
# every artifact of a dataset sees the same test images whatever its training seed.
SPLIT_SEED = 0
TEST_FRACTION = 0.2
MAX_CLASSES = models.MAX_CLASSES  # labels are class indices: a stray huge one must not make a billion classes
NAMED = ("digits", "xor", "mnist", "fashion-mnist")
PREFIXED = ("idx", "npz", "csv", "folder")


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # uint8 (N, H, W, C)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    test_from: str = "its test split"  # where the test images came from, said beside every score
    read_from: str | None = None        # the folder a named IDX set was found in

    def test_sha256(self) -> str:
        """What identifies the test split wherever it is read from: its pixels and labels."""
        import hashlib
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.x_test).tobytes())
        h.update(np.ascontiguousarray(self.y_test, dtype=np.int64).tobytes())
        h.update(repr(self.x_test.shape).encode())
        return h.hexdigest()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def describe_names() -> str:
    return ", ".join(NAMED) + ", " + ", ".join(f"{p}:PATH" for p in PREFIXED)


def load(name: str, data_dir=None, whole: bool = False, resize: tuple[int, int] | None = None) -> Dataset:
    """Resolve a dataset name to arrays; every failure is a one-line BadInput. With
    `whole`, a set that has no split of its own (a CSV file, a folder of class folders)
    is all test images: the user named it as a test set. `resize` (height, width)
    resizes a folder's images (images.py says how); other sets are arrays of one size."""
    if resize is not None and not name.startswith("folder:"):
        raise BadInput(f"--resize applies to folder: datasets, not {name!r}")
    if name == "digits":
        return _digits()
    if name == "xor":
        return _xor()
    if name in idx.SOURCES:
        folder = idx.locate(name, data_dir)
        ds = _from_idx(name, folder, list(idx.SOURCES[name].classes))
        ds.read_from = str(folder.resolve())
        return ds
    kind, sep, path = name.partition(":")
    if not sep or kind not in PREFIXED:
        raise BadInput(f"unknown dataset {name!r}; choose one of {describe_names()}")
    p = Path(path).expanduser()
    if not p.exists():
        raise BadInput(f"dataset {name!r}: {p} does not exist")
    if kind == "folder":
        return _folder(name, p, whole, resize)
    if kind == "csv":
        return _csv(name, p, whole)
    return {"idx": _idx_folder, "npz": _npz}[kind](name, p)


def by_class_names(ds: Dataset, classes: list[str]) -> Dataset:
    """A test set whose classes are some of a model's, named alike (a folder of only some
    class folders), relabelled to the model's class order."""
    if ds.classes == list(classes) or not set(ds.classes) <= set(classes):
        return ds
    index = np.array([list(classes).index(c) for c in ds.classes])
    return Dataset(ds.name, ds.x_train, index[ds.y_train], ds.x_test, index[ds.y_test], list(classes), ds.test_from,
                   ds.read_from)


def canonical_name(name: str) -> str:
    """The name to record in a run: prefixed paths made absolute."""
    kind, sep, path = name.partition(":")
    if sep and kind in PREFIXED:
        return f"{kind}:{Path(path).expanduser().resolve()}"
    return name


def _finish(name, x_train, y_train, x_test, y_test, classes=None, test_from: str = "its test split") -> Dataset:
    """Check and normalise what a loader read: NHWC uint8 images, labels in range."""
    xs = []
    for split, x in (("train", x_train), ("test", x_test)):
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise BadInput(f"dataset {name!r}: {split} images have shape {x.shape}; "
                           f"expected (N, H, W) or (N, H, W, 1|3)")
        if len(x) == 0:
            raise BadInput(f"dataset {name!r}: the {split} split is empty")
        if 0 in x.shape:
            raise BadInput(f"dataset {name!r}: {split} images have shape {x.shape}, with no pixels")
        xs.append(_to_uint8(name, split, x))
    if xs[0].shape[1:] != xs[1].shape[1:]:
        raise BadInput(f"dataset {name!r}: train images are {xs[0].shape[1:]} "
                       f"but test images are {xs[1].shape[1:]}")
    ys = []
    for split, y, n in (("train", y_train, len(xs[0])), ("test", y_test, len(xs[1]))):
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != n:
            raise BadInput(f"dataset {name!r}: {n} {split} images but labels of shape {y.shape}")
        ys.append(_int_labels(name, split, y))
    if classes is None:
        top = int(max(ys[0].max(), ys[1].max()))
        if top >= MAX_CLASSES:
            raise BadInput(f"dataset {name!r}: label {top} would make {top + 1:,} classes; "
                           f"labels must be 0..{MAX_CLASSES - 1}")
        classes = [str(c) for c in range(top + 1)]
    for split, y in zip(("train", "test"), ys):
        bad = (y < 0) | (y >= len(classes))
        if bad.any():
            raise BadInput(f"dataset {name!r}: {split} label {int(y[bad][0])} is out of range "
                           f"0..{len(classes) - 1}")
    if len(classes) < 2:
        raise BadInput(f"dataset {name!r}: needs at least 2 classes, found {len(classes)}")
    return Dataset(name, xs[0], ys[0], xs[1], ys[1], list(classes), test_from)


def _int_labels(name, split, y) -> np.ndarray:
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.isfinite(y)) \
                or not np.all(y == np.round(y)):
            raise BadInput(f"dataset {name!r}: {split} labels are not integers")
    if len(y) and y.min() < 0:
        raise BadInput(f"dataset {name!r}: {split} label {int(y.min())} is out of range (negative)")
    return y.astype(np.int64)


def _to_uint8(name, split, x):
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
            raise BadInput(f"dataset {name!r}: float {split} images must lie in [0, 1]")
        return np.round(x * 255).astype(np.uint8)
    if np.issubdtype(x.dtype, np.integer):
        if x.min() < 0 or x.max() > 255:
            raise BadInput(f"dataset {name!r}: {split} pixels must lie in 0..255, "
                           f"found {x.min()}..{x.max()}")
        return x.astype(np.uint8)
    raise BadInput(f"dataset {name!r}: {split} images have dtype {x.dtype}, not numbers")


def _split(name, x, y, classes=None, whole: bool = False) -> Dataset:
    from sklearn.model_selection import train_test_split
    y = _int_labels(name, "all", y)
    if whole:
        return _finish(name, x, y, x, y, classes, f"all {len(y)} images")
    try:
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y)
    except ValueError as e:  # e.g. a class with a single image cannot be stratified
        raise BadInput(f"dataset {name!r}: cannot split into train and test ({brief(e)})") from None
    return _finish(name, x_tr, y_tr, x_te, y_te, classes,
                   f"a fixed {TEST_FRACTION:.0%} stratified split of its {len(y)} images (seed {SPLIT_SEED})")


def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    d = load_digits()
    # pixels are 0..16; stretch them to the uint8 range every other source uses
    x = np.round(d.images * (255 / 16)).astype(np.uint8)
    return _split("digits", x, d.target, [str(c) for c in d.target_names])


def _xor() -> Dataset:
    """The truth table of XOR: inputs 0 and 1 stored as pixels 0 and 255, so that the usual
    scaling (divide by 255) gives the network exactly 0 and 1. The four cases are both the
    training and the test split: XOR has no unseen cases to hold out."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.uint8).reshape(4, 1, 2, 1) * 255
    y = np.array([0, 1, 1, 0])
    return _finish("xor", x, y, x.copy(), y.copy(), ["0", "1"], "the four cases (also the training set)")


def _from_idx(name, folder: Path, classes=None) -> Dataset:
    x_tr, y_tr = idx.read_split(folder, "train")
    x_te, y_te = idx.read_split(folder, "t10k")
    return _finish(name, x_tr, y_tr, x_te, y_te, classes, f"the t10k files in {folder}")


def _idx_folder(name, path: Path) -> Dataset:
    if not path.is_dir():
        raise BadInput(f"dataset {name!r}: {path} is not a folder")
    return _from_idx(name, path)


# What reading a damaged zip of .npy files raises, besides the usual OSError/ValueError:
# a cut stream (EOFError), bad deflate data (zlib.error), a flipped compression method
# (NotImplementedError), a flipped "encrypted" flag (RuntimeError), a header too large
# to allocate (MemoryError).
BROKEN_ZIP = (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile, NotImplementedError,
              RuntimeError, MemoryError)


def _npz(name, path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
            if missing:
                raise BadInput(f"dataset {name!r}: {path} lacks {', '.join(missing)}")
            arrays = [z[k] for k in ("x_train", "y_train", "x_test", "y_test")]
            classes = z["classes"] if "classes" in z.files else None
    except BadInput:
        raise
    except BROKEN_ZIP as e:
        raise BadInput(f"dataset {name!r}: not a readable .npz ({brief(e)})") from None
    if classes is not None:
        if classes.ndim != 1 or classes.dtype.kind not in "USiu":
            raise BadInput(f"dataset {name!r}: classes must be a 1-d array of names, not {classes.dtype} "
                           f"of shape {classes.shape}")
        classes = [str(c) for c in classes]
    return _finish(name, *arrays, classes, f"x_test of {path}")


def _csv(name, path: Path, whole: bool = False) -> Dataset:
    """One image a row: the label, then the pixels of a square grayscale image (0..255).
    A first row that is not numeric is taken as a header."""
    labels, rows, width = [], [], None
    try:
        with open(path, newline="") as f:
            for lineno, row in enumerate(csv.reader(f), 1):
                if not row or all(not c.strip() for c in row):
                    continue
                try:
                    values = [float(c) for c in row]
                except ValueError:
                    if lineno == 1:
                        continue  # header
                    raise BadInput(f"dataset {name!r}: {path} line {lineno} has a "
                                   f"non-numeric value") from None
                if width is None:
                    width = len(values)
                elif len(values) != width:
                    raise BadInput(f"dataset {name!r}: {path} line {lineno} has {len(values)} "
                                   f"columns, the first row has {width}")
                labels.append(values[0])
                rows.append(values[1:])
    except (OSError, UnicodeDecodeError, csv.Error) as e:  # csv.Error: a field over the size limit
        raise BadInput(f"dataset {name!r}: cannot read {path} ({brief(e)})") from None
    if not rows:
        raise BadInput(f"dataset {name!r}: {path} has no data rows")
    pixels = np.asarray(rows, dtype=np.float64)
    # a square grey image, or a square RGB one (H, W, C order): 3 * side**2 is never a square
    channels = 1 if round(np.sqrt(pixels.shape[1])) ** 2 == pixels.shape[1] else 3
    side = int(round(np.sqrt(pixels.shape[1] / channels)))
    if side * side * channels != pixels.shape[1] or side == 0:
        raise BadInput(f"dataset {name!r}: {pixels.shape[1]} pixels a row is not a square image "
                       f"(side x side grey, or side x side x 3 RGB)")
    if not np.all(np.isfinite(pixels)) or pixels.min() < 0 or pixels.max() > 255 \
            or not np.all(pixels == np.round(pixels)):
        raise BadInput(f"dataset {name!r}: pixels must be integers in 0..255")
    x = pixels.astype(np.uint8).reshape(-1, side, side, channels)
    return _split(name, x, np.asarray(labels), whole=whole)


def _class_images(name, path: Path) -> tuple[list[str], list[tuple[Path, object]], list[str]]:
    """The class sub-folders of `path`: their names, and each image with its class name."""
    class_dirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes, found, labels = [], [], []
    for d in class_dirs:
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in images.SUFFIXES)
        if not files:
            continue
        classes.append(d.name)
        for f in files:
            try:
                found.append((f, images.open_image(f)))
            except BadInput as e:
                raise BadInput(f"dataset {name!r}: {e}") from None
            labels.append(d.name)
    if not found:
        raise BadInput(f"dataset {name!r}: {path} has no class sub-folders with PNG/JPEG images")
    return classes, found, labels


def _folder(name, path: Path, whole: bool = False, resize: tuple[int, int] | None = None) -> Dataset:
    """Class sub-folders of images, split 80/20; or train/ and test/ folders, each of
    class sub-folders, which are the split."""
    if not path.is_dir():
        raise BadInput(f"dataset {name!r}: {path} is not a folder")
    if (path / "train").is_dir() and (path / "test").is_dir():
        classes, train, train_labels = _class_images(name, path / "train")
        test_classes, test, test_labels = _class_images(name, path / "test")
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise BadInput(f"dataset {name!r}: test/{unknown[0]} is a class that train/ does not have")
        x = _arrays(name, train + test, resize)
        y = [classes.index(c) for c in train_labels + test_labels]
        return _finish(name, x[:len(train)], y[:len(train)], x[len(train):], y[len(train):], classes,
                       f"the {len(test)} images in {path / 'test'}")
    classes, found, labels = _class_images(name, path)
    return _split(name, _arrays(name, found, resize), np.asarray([classes.index(c) for c in labels]), classes, whole)


def _arrays(name, found, resize=None) -> np.ndarray:
    try:
        return images.to_array(found, resize=resize)
    except BadInput as e:
        raise BadInput(f"dataset {name!r}: {e}") from None
