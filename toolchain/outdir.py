"""Output folders that appear whole or not at all.

Everything is written into a hidden temporary folder beside the destination, which is
renamed into place only when complete. With --force an existing folder is replaced by a
rename too, so a crash at any moment leaves either the old folder or the new one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import BadInput, brief


def check_free(final: Path, force: bool, what: str = "output folder") -> None:
    if final.exists() or final.is_symlink():
        if not final.is_dir():
            raise BadInput(f"{what} {final} exists and is not a folder")
        if not force:
            raise BadInput(f"{what} {final} already exists; pass --force to replace it")


@contextmanager
def staged(final: Path, force: bool, what: str = "output folder"):
    """Yield a temporary folder; on a clean exit it becomes `final`."""
    final = Path(final)
    check_free(final, force, what)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    except OSError as e:
        raise BadInput(f"cannot create {what} {final} ({e.strerror})") from None
    try:
        yield tmp
        check_free(final, force, what)  # another process may have made it meanwhile
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def built_in_place(final: Path, force: bool, what: str = "output folder"):
    """For a folder built at its final path because what is inside records that path (the
    pipeline's manifests name their run folders). An old folder is moved aside first and
    put back if the build fails; a failed new build is removed, so a rerun is not refused."""
    final = Path(final)
    check_free(final, force, what)
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        os.replace(final, old / final.name)
    try:
        yield final
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        if old is not None:
            os.replace(old / final.name, final)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write one file beside its destination and rename it into place: a reader (or a
    crash) sees the old file or the new one, never half of one."""
    from edgecnn.runtime.harness import write_atomic  # the harness needs it on devices too
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(str(path), text)
    except OSError as e:
        raise BadInput(f"cannot write {path} ({e.strerror or e})") from None


def file_digests(path: Path, *algorithms: str) -> tuple[str, ...]:
    """Hex digests of a file, read once in 1 MiB chunks."""
    import hashlib
    hashes = [hashlib.new(a) for a in algorithms]
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            for h in hashes:
                h.update(chunk)
    return tuple(h.hexdigest() for h in hashes)


def read_json_object(path: Path) -> dict:
    """A JSON object from a file a user handed us; any failure is a one-line BadInput."""
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise BadInput(f"{path} is not valid JSON ({brief(e)})") from None
    if not isinstance(d, dict):
        raise BadInput(f"{path} is not a JSON object")
    return d
