"""What the folders edgecnn writes hold, and the one-line hint for a command given the
wrong one: a run folder (`train`: run.json), an artifact folder (`export`: manifest.json),
a pipeline's folder (runs/ and artifacts/ inside), or one artifact file."""
from __future__ import annotations

from pathlib import Path

from edgecnn.runtime import format_of

RUN_FILE, MANIFEST = "run.json", "manifest.json"
ONE_FILE = {"inspect": "", "predict": " IMAGE"}  # the commands that take one artifact file, and what follows it


def _inside(folder: Path, marker: str) -> list[str]:
    return sorted(str(p.parent) for p in folder.glob(f"*/{marker}"))


def kind(path: Path) -> str | None:
    """"run", "artifacts", "pipeline", "artifact" (one file) or None."""
    path = Path(path)
    if path.is_file():
        return "artifact" if format_of(path) else None
    if (path / RUN_FILE).is_file():
        return "run"
    if (path / MANIFEST).is_file():
        return "artifacts"
    if (path / "artifacts").is_dir() and (path / "runs").is_dir():
        return "pipeline"
    return None


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if format_of(p))


def _example(command: str, folders: list[str]) -> str:
    if not folders:
        return ""
    first = Path(folders[0])
    if command in ONE_FILE:
        files = _files(first)
        return f" (e.g. edgecnn {command} {files[0]}{ONE_FILE[command]})" if files else ""
    return f" (e.g. edgecnn {command} {first})"


def hint(path: Path, command: str) -> str:
    """What `path` is and what `command` wants instead, or "" when it is nothing edgecnn wrote."""
    path = Path(path)
    what = kind(path)
    if what == "pipeline":
        folders = _inside(path / "artifacts", MANIFEST) if command != "export" else _inside(path / "runs", RUN_FILE)
        wanted = "runs" if command == "export" else "artifacts"
        return (f"{path} is a pipeline's folder; its {wanted} are in " + (", ".join(folders) or f"{path / wanted}")
                + _example(command, folders))
    if what is None and path.is_dir():
        for marker, wanted in ((MANIFEST, "artifact"), (RUN_FILE, "run")):
            folders = _inside(path, marker)
            if folders and (wanted == "run") == (command == "export"):
                return f"{path} holds {wanted} folders: {', '.join(folders)}" + _example(command, folders)
    if what == "run":
        return (f"{path} is a training run; make its artifacts first: edgecnn export {path}"
                if command != "export" else "")
    if what == "artifacts":
        if command in ONE_FILE:
            return f"{path} is an artifact folder; {command} takes one of its files" + _example(command, [str(path)])
        if command == "export":
            return f"{path} holds artifacts already; export takes the run folder `edgecnn train` wrote"
    if what == "artifact" and command == "export":
        return (f"{path} is an artifact file; export takes the run folder `edgecnn train` wrote "
                f"(edgecnn inspect or validate take artifact files)")
    if path.is_dir() and command in ONE_FILE:
        return f"{path} is a folder; {command} takes one artifact file"
    return ""
