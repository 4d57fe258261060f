"""MNIST-style datasets in their original IDX format: the reader, the checksums, finding
the files on disk, and downloading them (with verification) where a network is there.

The IDX reader is written by hand: the format is a 4-byte magic, big-endian dimension
sizes and raw bytes, and no maintained library reads it without pulling a framework's
dataset package (torchvision has no CPU wheel here).
"""
from __future__ import annotations

import gzip
import os
import shutil
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecnn.runtime.harness import mkstemp

from .errors import BadInput, brief
from .outdir import file_digests

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclass(frozen=True)
class IdxSource:
    name: str
    classes: tuple[str, ...]
    # file name -> (published MD5, SHA-256) of the .gz file
    checksums: dict[str, tuple[str, str]]
    mirrors: tuple[str, ...]


SOURCES = {
    "mnist": IdxSource(
        name="mnist",
        classes=tuple(str(d) for d in range(10)),
        checksums={
            "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873",
                                           "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432",
                                           "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3",
                                          "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c",
                                          "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    ),
    "fashion-mnist": IdxSource(
        name="fashion-mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        checksums={
            "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                                           "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe",
                                           "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79",
                                          "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
            "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310",
                                          "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
}

_MAGIC_UBYTE = 0x08


def read_idx(path: Path, expect_ndim: int) -> np.ndarray:
    """Parse one IDX file (gzip-compressed or raw) of unsigned bytes."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        # gzip.BadGzipFile is an OSError; a truncated stream is an EOFError
        raise BadInput(f"{path}: not a readable gzip file ({brief(e)})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise BadInput(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    if data[2] != _MAGIC_UBYTE:
        raise BadInput(f"{path}: IDX data type 0x{data[2]:02x} is not unsigned bytes (0x08)")
    ndim = data[3]
    if ndim != expect_ndim:
        raise BadInput(f"{path}: IDX magic number says {ndim} dimensions, expected {expect_ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise BadInput(f"{path}: IDX header is truncated")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise BadInput(f"{path}: IDX header says shape {shape} ({expected} bytes) "
                       f"but the file has {len(data)} bytes")
    # a bytearray makes the array writable, which torch.from_numpy expects
    return np.frombuffer(bytearray(data), dtype=np.uint8, offset=header).reshape(shape)


def read_split(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) and labels (N,) of one split ('train' or 't10k') in an IDX folder."""
    x = read_idx(_pick(folder, f"{prefix}-images-idx3-ubyte"), 3)
    y = read_idx(_pick(folder, f"{prefix}-labels-idx1-ubyte"), 1)
    if len(x) != len(y):
        raise BadInput(f"{folder}: {prefix} has {len(x)} images but {len(y)} labels")
    return x, y


def _pick(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise BadInput(f"{folder}: no {stem}.gz or {stem}")


def user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgecnn" / "datasets"


def search_path(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """The folders looked at for a named IDX dataset, in order: --data-dir,
    $EDGECNN_DATA_DIR, the user cache. Each may hold the files directly or in NAME/."""
    roots = []
    if data_dir:
        roots.append(Path(data_dir))
    if os.environ.get("EDGECNN_DATA_DIR"):
        roots.append(Path(os.environ["EDGECNN_DATA_DIR"]))
    roots.append(user_cache())
    places = []
    for root in roots:
        places += [root / name, root]
    return places


def verify(folder: Path, source: IdxSource) -> None:
    for fname, (md5, sha256) in source.checksums.items():
        path = folder / fname
        got_md5, got_sha = _digests(path)
        if got_md5 != md5 or got_sha != sha256:
            raise BadInput(f"{path}: checksum mismatch (sha256 {got_sha[:16]}…, expected "
                           f"{sha256[:16]}…); the file is corrupt or not the published {source.name}")


def _digests(path: Path) -> tuple[str, str]:
    return file_digests(path, "md5", "sha256")


def locate(name: str, data_dir=None, download: bool | None = None) -> Path:
    """The verified folder holding dataset `name`, downloading it into the user cache when
    it is nowhere on disk and downloads are allowed (not when EDGECNN_OFFLINE=1)."""
    source = SOURCES[name]
    places = search_path(name, data_dir)
    for folder in places:
        if all((folder / f).is_file() for f in FILES):
            verify(folder, source)
            return folder
    if download is None:
        download = os.environ.get("EDGECNN_OFFLINE", "") in ("", "0")
    looked = ", ".join(str(p) for p in places)
    if not download:
        raise BadInput(f"{name} not found (looked in {looked}); pass --data-dir, set "
                       f"EDGECNN_DATA_DIR, or unset EDGECNN_OFFLINE to download it")
    target = user_cache() / name
    errors = []
    for mirror in source.mirrors:
        try:
            fetch(source, mirror, target)
            return target
        except BadInput:
            raise
        except OSError as e:
            errors.append(f"{mirror}: {e}")
    raise BadInput(f"{name} not found (looked in {looked}) and the download failed "
                   f"({'; '.join(errors)})")


def fetch(source: IdxSource, base_url: str, target: Path, timeout: float = 30.0) -> None:
    """Download every file of `source` into `target`, each to a temporary name, verified
    against its checksum before it is renamed into place."""
    target.mkdir(parents=True, exist_ok=True)
    for fname, (md5, sha256) in source.checksums.items():
        final = target / fname
        if final.is_file() and _digests(final) == (md5, sha256):
            continue
        fd, tmp = mkstemp(str(target), fname, ".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(base_url + fname, timeout=timeout) as r:
                shutil.copyfileobj(r, out)
            got = _digests(Path(tmp))
            if got != (md5, sha256):
                raise BadInput(f"downloaded {base_url}{fname}: checksum mismatch "
                               f"(sha256 {got[1][:16]}…, expected {sha256[:16]}…); nothing was kept")
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
