"""`edgecnn doctor`: which runtimes, converters and targets are usable here, and why not."""
from __future__ import annotations

import platform
from importlib import metadata

from edgecnn.runtime import RUNNERS, RuntimeMissing, runner_class

# what export needs for each format: each requirement is a distribution, or alternatives
# that provide the same module; checked by metadata so doctor does not pay for imports
CONVERTERS = {"tflite": [("tensorflow", "tensorflow-cpu")], "ptl": [("torch",)],
              "onnx": [("torch",), ("onnx",), ("onnxscript",), ("onnxruntime",)]}


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check() -> dict:
    runtimes = []
    for fmt in RUNNERS:
        cls = runner_class(fmt)
        try:
            runtimes.append({"format": fmt, "runtime": cls.runtime, "usable": True, "version": cls.probe()})
        except RuntimeMissing as e:
            runtimes.append({"format": fmt, "runtime": cls.runtime, "usable": False, "reason": str(e),
                             "hint": e.hint})
    converters = []
    for fmt, needs in CONVERTERS.items():
        found, missing = {}, []
        for alternatives in needs:
            have = [(n, _dist_version(n)) for n in alternatives if _dist_version(n)]
            if have:
                found.update(have[:1])
            else:
                missing.append(alternatives[0])
        converters.append({"format": fmt, "usable": not missing, "versions": found,
                           **({"reason": f"needs {', '.join(missing)}"} if missing else {})})
    targets = [{"target": "local", "usable": True,
                "detail": f"{platform.machine()}, Python {platform.python_version()}"}]
    targets += [{"target": t, "usable": False, "reason": "not supported by this edgecnn yet"}
                for t in ("emulated:cortex-a72", "emulated:cortex-a76", "ssh://user@host")]
    return {"runtimes": runtimes, "converters": converters, "targets": targets,
            "ok": all(r["usable"] for r in runtimes)}


def render(info: dict) -> str:
    lines = ["runtimes (validate):"]
    for r in info["runtimes"]:
        state = f"ok     {r['version']}" if r["usable"] else f"MISSING  {r['reason']}; {r['hint']}"
        lines.append(f"  {r['format']:<7} {r['runtime']:<26} {state}")
    lines.append("converters (export):")
    for c in info["converters"]:
        state = ("ok     " + ", ".join(f"{k} {v}" for k, v in c["versions"].items())) if c["usable"] \
            else f"MISSING  {c['reason']}"
        lines.append(f"  {c['format']:<7} {state}")
    lines.append("targets:")
    for t in info["targets"]:
        lines.append(f"  {t['target']:<22} " + (f"ok     {t['detail']}" if t["usable"] else f"no     {t['reason']}"))
    return "\n".join(lines)
