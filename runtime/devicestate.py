"""The state of the machine a latency was measured on, read before and after the run:
the CPU governor and clocks (cpufreq), the SoC temperature (thermal zone 0) and, on a
Raspberry Pi, the firmware's throttling flags (`vcgencmd get_throttled`). A run during
which the CPU was throttled, capped or under-volted measured a slower machine than the
board is: it is marked, not hidden.

Everything is read from sysfs under ROOT ("/", or $EDGECNN_SYSFS_ROOT for a test's fake
tree, whose usr/bin/vcgencmd then stands in for the firmware's); what a machine lacks is
None. Standard library only: this runs on the device.
"""
from __future__ import annotations

import os
import shutil
import subprocess

CPUFREQ = "sys/devices/system/cpu/cpu0/cpufreq"
THERMAL = "sys/class/thermal/thermal_zone0/temp"
# vcgencmd get_throttled bits: 0-3 now, 16-19 at some time since boot
THROTTLE_BITS = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled", 3: "soft temperature limit"}


def _root() -> str:
    return os.environ.get("EDGECNN_SYSFS_ROOT") or "/"


def _read(path: str) -> str | None:
    try:
        with open(os.path.join(_root(), path)) as f:
            return f.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _number(text: str | None, scale: float) -> float | None:
    try:
        return None if text is None else round(int(text) / scale, 1)
    except ValueError:
        return None


def _throttled() -> int | None:
    fake = os.path.join(_root(), "usr/bin/vcgencmd")
    tool = fake if os.environ.get("EDGECNN_SYSFS_ROOT") else shutil.which("vcgencmd")
    if not tool or not os.access(tool, os.X_OK):
        return None
    try:
        out = subprocess.run([tool, "get_throttled"], capture_output=True, text=True, timeout=5).stdout
        return int(out.strip().split("=", 1)[1], 16)
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None


def read() -> dict:
    return {"governor": _read(f"{CPUFREQ}/scaling_governor"),
            "cur_mhz": _number(_read(f"{CPUFREQ}/scaling_cur_freq"), 1000),
            "max_mhz": _number(_read(f"{CPUFREQ}/cpuinfo_max_freq"), 1000),
            "temp_c": _number(_read(THERMAL), 1000),
            "throttled": _throttled()}


def judge(before: dict, after: dict) -> dict:
    """The two readings, and why the run counts as throttled (None when it does not):
    a throttling flag set now, or one that first occurred during the run."""
    why = []
    flags = after.get("throttled")
    if flags is not None:
        now = [name for bit, name in THROTTLE_BITS.items() if flags >> bit & 1]
        new = [name for bit, name in THROTTLE_BITS.items()
               if flags >> (bit + 16) & 1 and not (before.get("throttled") or 0) >> (bit + 16) & 1]
        why += [f"{n} (now)" for n in now] + [f"{n} (during the run)" for n in new if n not in now]
    return {"before": before, "after": after, "throttled": "; ".join(why) or None}
