"""Output folders that appear whole or not at all.

Everything is written into a hidden temporary folder beside the destination, which is
renamed into place only when complete. With --force an existing folder is replaced by a
rename too, so a crash at any moment leaves either the old folder or the new one.

One process at a time writes a destination: it holds an flock on `.NAME.lock` beside
it, which the kernel releases when the process dies, kill -9 included. The next writer
to take the lock clears what a killed one left (its temporary folder, or an old folder
that a cut-short swap had moved aside, which goes back into place).
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import BadInput, brief

INCOMPLETE = ".edgecnn-incomplete"  # inside a folder built in place until it is complete


def check_free(final: Path, force: bool, what: str = "output folder") -> None:
    if (final / INCOMPLETE).exists():
        return  # half-built by a process that was killed: its next writer clears it
    if final.exists() or final.is_symlink():
        if not final.is_dir():
            raise BadInput(f"{what} {final} exists and is not a folder")
        if not force:
            raise BadInput(f"{what} {final} already exists; pass --force to replace it")


def _aside(final: Path, kind: str) -> Path:
    """A new hidden folder beside `final`: kind "partial" (being built) or "old" (moved
    aside during a swap). Its mode follows the umask, as an ordinary new folder's does
    (tempfile's are 0700), since a "partial" one becomes the output."""
    from edgecnn.runtime.harness import umask
    folder = Path(tempfile.mkdtemp(prefix=f".{final.name}.edgecnn-", suffix=f".{kind}", dir=final.parent))
    folder.chmod(0o777 & ~umask())
    return folder


@contextmanager
def _claimed(final: Path, what: str):
    """Hold the destination's lock for the block, after clearing what a killed writer
    left; BadInput at once when another process holds it."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"cannot create {what} {final} ({e.strerror})") from None
    lock = final.parent / f".{final.name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise BadInput(f"cannot create {what} {final} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BadInput(f"{what} {final} is being written by another edgecnn process (pid {holder}); "
                           f"wait for it to finish, or choose another destination") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we took it: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _recover(final)
        yield
    finally:
        os.unlink(lock)  # before unlocking: a process waiting on this file then retries
        os.close(fd)


def _recover(final: Path) -> None:
    """Clear what a writer of `final` killed mid-way left beside it: a half-built folder,
    or a complete old one that a cut-short swap or build had moved aside (put back)."""
    if (final / INCOMPLETE).exists():
        shutil.rmtree(final)
    pattern = re.compile(rf"\.{re.escape(final.name)}\.edgecnn-[A-Za-z0-9_]{{8}}\.(partial|old)")
    for leftover in sorted(final.parent.iterdir()):
        if not pattern.fullmatch(leftover.name):
            continue
        if leftover.name.endswith(".old") and (leftover / final.name).is_dir() and not final.exists():
            os.replace(leftover / final.name, final)
        shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def staged(final: Path, force: bool, what: str = "output folder"):
    """Yield a temporary folder; on a clean exit it becomes `final`."""
    final = Path(final)
    with _claimed(final, what):
        check_free(final, force, what)
        try:
            tmp = _aside(final, "partial")
        except OSError as e:
            raise BadInput(f"cannot create {what} {final} ({e.strerror})") from None
        try:
            yield tmp
            check_free(final, force, what)
            if final.exists():
                old = _aside(final, "old")
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
    put back if the build fails; a failed new build is removed, so a rerun is not refused.
    Until the build is complete the folder holds a marker file (INCOMPLETE): if the
    process is killed, the next writer removes the half-built folder and puts the old
    one back."""
    final = Path(final)
    with _claimed(final, what):
        check_free(final, force, what)
        old = None
        if final.exists():
            old = _aside(final, "old")
            os.replace(final, old / final.name)
        try:
            final.mkdir()
            (final / INCOMPLETE).write_text("edgecnn is building this folder; if no edgecnn is running, "
                                            "the next run that writes here clears it\n")
            yield final
            (final / INCOMPLETE).unlink()
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
