"""The CPU's int8 instructions, as the kernels that run an int8 artifact see them.

Why a results document records them: x86 int8 kernels without VNNI multiply u8 x s8
pairs with `vpmaddubsw`, which adds two products into a *saturating* int16, so a sum
that overflows is clipped. VNNI (`avx512_vnni`, `avx_vnni`) accumulates in int32, and
ARM's NEON and dot-product (`asimddp`) kernels do not saturate either. The same int8
file can therefore answer differently on two CPUs (../shared/notes/int8-hosts.md).

Read from /proc/cpuinfo: on a device it is the device's own; under QEMU user-mode
emulation the emulated environment serves a file of its own in its place.
"""
from __future__ import annotations

import platform

# the flags that decide how int8 products are summed, x86 then ARM
INT8_FLAGS = ("avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm")
VNNI = ("avx512_vnni", "avx_vnni", "amx_int8")
SATURATING = "int16 pairs, saturating (x86 without VNNI: vpmaddubsw)"


def parse(cpuinfo: str, machine: str) -> dict:
    """{"machine", "model", "int8": the INT8_FLAGS present, "int8_accumulation"} from the
    text of a /proc/cpuinfo."""
    flags: set[str] = set()
    names: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features"):
            flags.update(value.split())
        elif key in ("model name", "model") and not value.strip().isdigit():
            names.setdefault(key, value.strip())  # x86 "model name"; a Pi's board is "Model"
    model = names.get("model name") or names.get("model")
    x86 = machine in ("x86_64", "amd64", "i686", "i386") or "sse2" in flags
    arm = machine in ("aarch64", "arm64") or machine.startswith("armv") or "asimd" in flags
    if x86:
        accumulation = "int32 (VNNI)" if flags & set(VNNI) else SATURATING
    elif arm:
        accumulation = "int32 (NEON" + (", sdot)" if "asimddp" in flags else ")")
    else:
        accumulation = None
    return {"machine": machine, "model": model, "int8": [f for f in INT8_FLAGS if f in flags],
            "int8_accumulation": accumulation}


def describe() -> dict:
    """This machine's CPU (or the one emulated for this process)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        text = ""
    return parse(text, platform.machine().lower())


def saturates(info: dict | None) -> bool:
    return bool(info) and info.get("int8_accumulation") == SATURATING
