"""`edgecnn inspect ARTIFACT`: format, precision, size, tensors and operator counts.

The file is checked against the manifest beside it, when there is one, before any
runtime reads it, and it is opened in a child process (runtime/sandbox.py): a file that
crashes its runtime is reported as invalid instead of taking edgecnn down.
"""
from __future__ import annotations

from pathlib import Path

from edgecnn.converters import UNAVAILABLE
from edgecnn.runtime import RUNNERS, ArtifactError, RuntimeMissing, format_of, runner_class, sandbox

from . import layout, outdir
from .errors import BadInput


def describe(path: Path) -> dict:
    if path.is_dir():
        raise BadInput(layout.hint(path, "inspect"))
    fmt = format_of(path)
    if fmt is None:
        raise BadInput(f"{path}: unknown artifact type {path.suffix!r}; {known_suffixes()}")
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    entry = manifest_entry(path)
    if entry:
        verify(path, entry)
    try:
        loaded = sandbox.describe(fmt, path)
    except (ArtifactError, RuntimeMissing) as e:
        raise BadInput(str(e)) from None
    # what the runtime reads from the file; the manifest adds what only export knew
    precision = entry.get("precision") if isinstance(entry.get("precision"), str) else None
    info = {"file": str(path), "format": fmt, "runtime": loaded["runtime"],
            "precision": precision or _guess_precision(fmt, loaded),
            "bytes": path.stat().st_size,
            # export knew the fixed dimensions that a TorchScript file does not declare
            "input": _tensor_or(entry.get("input"), loaded["input"]),
            "output": _tensor_or(entry.get("output"), loaded["output"]),
            "operators": loaded["operators"], "concerns": loaded["concerns"]}
    if entry:
        info["manifest"] = {k: entry.get(k) for k in ("sha256", "converter", "notes", "calibration")}
    else:
        info["manifest"] = None  # nothing to check it against
    if runner_class(fmt).warning:
        info["warning"] = runner_class(fmt).warning
    return info


def known_suffixes() -> str:
    suffixes = [runner_class(f).suffix for f in RUNNERS]
    return f"expected {', '.join(suffixes[:-1])} or {suffixes[-1]}"


def manifest_entry(path: Path, strict: bool = False) -> dict:
    """The manifest's entry for this file, when an export manifest beside it lists it.
    A manifest there that cannot be read counts as none, or with `strict` is refused."""
    m = path.parent / "manifest.json"
    if not m.is_file():
        return {}
    try:
        artifacts = outdir.read_json_object(m).get("artifacts", [])
    except BadInput:
        if strict:
            raise
        return {}
    if not isinstance(artifacts, list):
        return {}
    # an entry for a format that could not be made lists no file
    return next((a for a in artifacts if isinstance(a, dict) and a.get("file") == path.name
                 and a.get("status") != UNAVAILABLE), {})


def verify(path: Path, entry: dict) -> None:
    """A listed file must be the one export wrote, before any runtime reads it."""
    sha, = outdir.file_digests(path, "sha256")
    if sha != entry.get("sha256"):
        raise BadInput(f"{path}: sha256 {sha[:16]}... does not match {path.parent / 'manifest.json'}; "
                       f"refusing to load it")


def _tensor_or(listed, loaded: dict) -> dict:
    """The manifest's tensor entry when it is well formed (manifests are hand-editable)."""
    def number(v):
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
    ok = isinstance(listed, dict) and all(isinstance(listed.get(k), str) for k in ("name", "layout", "dtype")) \
        and isinstance(listed.get("shape"), list) and all(d is None or type(d) is int for d in listed["shape"]) \
        and number(listed.get("scale")) and number(listed.get("zero_point"))
    return listed if ok else loaded


def _guess_precision(fmt: str, loaded: dict) -> str:
    hidden = runner_class(fmt).precision_hidden
    if hidden:
        return f"unknown ({hidden}, and no manifest beside it says)"
    ops = " ".join(loaded["operators"])
    # int8 inputs, or the quantize step of an int8 file with float inputs and outputs
    if loaded["input"]["dtype"] in ("int8", "uint8") or "quantized::" in ops or "QuantizeLinear" in ops \
            or "QUANTIZE" in loaded["operators"]:
        return "int8"
    return "fp32 (no manifest beside it)"


def _tensor(t: dict) -> str:
    q = f", scale {t['scale']:.6g}, zero point {t['zero_point']}" if t.get("scale") else ""
    return f"{t['name']}  {shape_text(t['shape'])}  {t['layout']}  {t['dtype']}{q}"


def shape_text(shape) -> str:
    """A tensor shape as 1x28x28x1, a dimension the file leaves open as N."""
    return "x".join("N" if d in (-1, None) else str(d) for d in shape)


def render(info: dict) -> str:
    lines = [f"{info['file']}",
             f"  format     {info['format']} ({info['runtime']})",
             f"  precision  {info['precision']}",
             f"  size       {info['bytes']:,} bytes",
             f"  input      {_tensor(info['input'])}",
             f"  output     {_tensor(info['output'])}",
             "  operators  " + ", ".join(f"{k} x{v}" for k, v in info["operators"].items()),
             "  checked    " + ("sha256 matches manifest.json" if info.get("manifest")
                                else "no manifest.json lists it, so its sha256 was not checked")]
    for warning in (*info["concerns"], *([info["warning"]] if "warning" in info else [])):
        lines.append(f"  warning    {warning}")
    return "\n".join(lines)
