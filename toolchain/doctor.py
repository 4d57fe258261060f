"""`edgecnn doctor`: which runtimes, converters and targets are usable here, and why not."""
from __future__ import annotations

import platform
import shutil
from importlib import metadata

from edgecnn.converters import FORMATS, converter
from edgecnn.runtime import RUNNERS, RuntimeMissing, cpu as cpus, runner_class

from . import emulation, pi_latency


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
    for fmt in FORMATS:
        found, missing = {}, []
        # each requirement is a distribution, or alternatives that provide the same module;
        # checked by metadata so doctor does not pay for imports
        for alternatives in converter(fmt).REQUIRES:
            have = [(n, _dist_version(n)) for n in alternatives if _dist_version(n)]
            if have:
                found.update(have[:1])
            else:
                missing.append(alternatives[0])
        converters.append({"format": fmt, "usable": not missing, "versions": found,
                           **({"reason": f"needs {', '.join(missing)}"} if missing else {})})
    here = cpus.describe()
    targets = [{"target": "local", "usable": True,
                "detail": f"{platform.machine()}, Python {platform.python_version()}, int8 instructions: "
                          f"{', '.join(here['int8']) or 'none'} (int8 sums: {here['int8_accumulation']})",
                "int8": here}]
    arm = emulation.status()
    for cpu in emulation.OFFERED:
        spec = emulation.CPUS[cpu]
        x86 = spec["arch"] == "x86_64"
        emu = emulation.x86_status(cpu) if x86 else arm
        t = {"target": f"emulated:{cpu}", "usable": bool(emu["qemu"]) and not emu.get("unusable")}
        if emu.get("unusable"):
            t["reason"] = emu["unusable"]
        elif not emu["qemu"]:
            t["reason"] = f"QEMU user-mode emulation is not installed; {emulation.QEMU_HINT}"
        elif emu["provisioned"]:
            t["detail"] = f"{spec['board']}; environment ready in {emu['root']}"
            for name, ready in emu.get("extras", {}).items():
                t["detail"] += (f"; with {name}" if ready else
                                f"; without the opt-in {name} ({emulation.extra_hint(name)})")
            if cpu in pi_latency.CORES:
                t["pi_estimates"] = emu.get("counting") is None
                t["detail"] += ("; Pi latency estimates: ready" if t["pi_estimates"] else
                                f"; no Pi latency estimates: {emu['counting']}")
        else:
            t["detail"] = (f"{spec['board']}; environment not set up yet: the first use sets it up "
                           f"({'seconds' if x86 else 'about a minute'}), or run `edgecnn device setup emulated`")
        targets.append(t)
    ssh = shutil.which("ssh")
    targets.append({"target": "ssh://user@host", "usable": bool(ssh),
                    **({"detail": f"OpenSSH client {ssh}; `edgecnn doctor --target ssh://user@host` checks a device"}
                       if ssh else {"reason": "the OpenSSH client (ssh) is not installed"})})
    return {"runtimes": runtimes, "converters": converters, "targets": targets,
            "ok": all(r["usable"] for r in runtimes)}


def check_device(url: str, python: str, ssh_config, accept_new: bool) -> dict:
    from .errors import BadInput
    from .targets import SshTarget
    if not url.startswith("ssh://"):
        raise BadInput(f"doctor --target takes an ssh://user@host[:port] device, not {url!r}")
    device = SshTarget(url, python=python, ssh_config=ssh_config, accept_new=accept_new)
    device.setup(log=lambda msg: None)
    try:
        runtimes = device.probe_runtimes()
    finally:
        device.close()
    target = {"target": url, "usable": True, "detail": f"{device.machine}, Python {device.pyver} ({python})"}
    return {"runtimes": runtimes, "converters": [], "targets": [target], "ok": all(r["usable"] for r in runtimes)}


def render(info: dict) -> str:
    lines = ["runtimes (validate):"]
    for r in info["runtimes"]:
        state = f"ok     {r['version']}" if r["usable"] else f"MISSING  {r['reason']}; {r['hint']}"
        lines.append(f"  {r['format']:<7} {r['runtime']:<26} {state}")
    if info["converters"]:
        lines.append("converters (export):")
    for c in info["converters"]:
        state = ("ok     " + ", ".join(f"{k} {v}" for k, v in c["versions"].items())) if c["usable"] \
            else f"MISSING  {c['reason']}"
        lines.append(f"  {c['format']:<7} {state}")
    lines.append("targets:")
    for t in info["targets"]:
        lines.append(f"  {t['target']:<22} " + (f"ok     {t['detail']}" if t["usable"] else f"no     {t['reason']}"))
    return "\n".join(lines)
