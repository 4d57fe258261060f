"""`edgecnn inspect ARTIFACT`: format, precision, size, tensors and operator counts."""
from __future__ import annotations

import json
from pathlib import Path

from edgecnn.runtime import RUNNERS, ArtifactError, RuntimeMissing, runner_for

from .errors import BadInput

PTL_WARNING = ("a .ptl file carries TorchScript code that runs when it is loaded: "
               "load only artifacts from a source you trust")


def describe(path: Path) -> dict:
    fmt = path.suffix.lstrip(".")
    if fmt not in RUNNERS:
        raise BadInput(f"{path}: unknown artifact type {path.suffix!r}; expected .tflite, .ptl or .onnx")
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    entry = _manifest_entry(path)
    runner = runner_for(fmt, path)
    try:
        runner.load()
        info = {"file": str(path), "format": fmt, "runtime": runner.runtime,
                "precision": entry.get("precision", _guess_precision(runner)),
                "bytes": path.stat().st_size,
                "input": entry.get("input") or runner.input_spec.to_json(),
                "output": entry.get("output") or runner.output_spec.to_json(),
                "operators": runner.op_counts()}
    except (ArtifactError, RuntimeMissing) as e:
        raise BadInput(str(e)) from None
    if entry:
        info["manifest"] = {k: entry.get(k) for k in ("sha256", "converter", "notes", "calibration")}
    if fmt == "ptl":
        info["warning"] = PTL_WARNING
    return info


def _manifest_entry(path: Path) -> dict:
    m = path.parent / "manifest.json"
    try:
        for a in json.loads(m.read_text()).get("artifacts", []):
            if a.get("file") == path.name:
                return a
    except (OSError, ValueError, AttributeError):
        pass
    return {}


def _guess_precision(runner) -> str:
    ops = " ".join(runner.op_counts())
    if runner.input_spec.dtype in ("int8", "uint8") or "quantized::" in ops or "QuantizeLinear" in ops:
        return "int8"
    return "fp32 (no manifest beside it)"


def _tensor(t: dict) -> str:
    q = f", scale {t['scale']:.6g}, zero point {t['zero_point']}" if t.get("scale") else ""
    shape = "x".join("N" if d in (-1, None) else str(d) for d in t["shape"])
    return f"{t['name']}  {shape}  {t['layout']}  {t['dtype']}{q}"


def render(info: dict) -> str:
    lines = [f"{info['file']}",
             f"  format     {info['format']} ({info['runtime']})",
             f"  precision  {info['precision']}",
             f"  size       {info['bytes']:,} bytes",
             f"  input      {_tensor(info['input'])}",
             f"  output     {_tensor(info['output'])}",
             "  operators  " + ", ".join(f"{k} x{v}" for k, v in info["operators"].items())]
    if "warning" in info:
        lines.append(f"  warning    {info['warning']}")
    return "\n".join(lines)
