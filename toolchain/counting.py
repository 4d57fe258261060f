"""Counting the guest instructions of an inference under emulation.

The dynamic `qemu-aarch64` of Debian's qemu-user loads TCG plugins; edgecnn's own
(qemu_count.c, beside this file) is compiled at provisioning with the system C compiler
into the emulated cache. The harness marks warmed inferences as regions
(runtime/harness.py, `count` jobs); the plugin writes what ran inside the regions: the
instruction count of each region and every translation block executed there, with its
execution count and its instruction words. `llvm-mc` turns the words back into
assembly, which the core models of toolchain/pi_latency.py read.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.runtime.harness import MARK_FD

from .errors import BadInput

SOURCE = Path(__file__).with_name("qemu_count.c")
QEMU_DYNAMIC = "qemu-aarch64"  # qemu-aarch64-static cannot load plugins
# what counting needs here, each with the Debian package that has it
TOOLS = (("qemu-aarch64", "qemu-user", "QEMU's dynamic user-mode emulator, which loads plugins"),
         ("cc", "gcc libc6-dev", "a C compiler and the C library's headers, to build the counting plugin"),
         ("llvm-mc", "llvm", "LLVM's assembler, to read the counted instructions back"),
         ("llvm-mca", "llvm", "LLVM's machine-code analyser, the Cortex-A72's cycle model"))
OUT_ENV = "EDGECNN_COUNT_OUT"
# the board's instruction set as llvm-mc must know it to read every word the runtimes
# execute (the A76's dot products and half floats included)
MATTR = "+neon,+fullfp16,+dotprod,+rdm,+rcpc,+crc,+aes,+sha2,+lse"


def missing_tools() -> list[tuple[str, str, str]]:
    """(tool, Debian package, what it is for) for each tool counting needs that is not
    here (.ci/run installs what this lists)."""
    return [t for t in TOOLS if not _have(t[0])]


def _have(tool: str) -> bool:
    if tool == "cc":  # a compiler without the C library's headers cannot build the plugin
        return shutil.which(tool) is not None and Path("/usr/include/stdio.h").is_file()
    return shutil.which(tool) is not None


def apt_hint(missing) -> str:
    return "apt-get install " + " ".join(dict.fromkeys(pkg for _, pkg, _ in missing))


def why_not() -> str | None:
    """Why instructions cannot be counted on this machine, or None when they can."""
    missing = missing_tools()
    if missing:
        return (f"Pi latency estimates need {', '.join(t for t, _, _ in missing)} "
                f"({'; '.join(why for _, _, why in missing)}): {apt_hint(missing)}")
    return None


def plugin_path(root: Path) -> Path:
    return root / "plugin" / "qemu_count.so"


def _built_for() -> str:
    """What a built plugin is good for: this source and mark, loaded by this QEMU."""
    qemu = subprocess.run([QEMU_DYNAMIC, "--version"], capture_output=True, text=True, timeout=30).stdout
    source = hashlib.sha256(SOURCE.read_bytes() + _define().encode()).hexdigest()[:16]
    return f"{source} {(qemu.splitlines() or ['?'])[0]}"


def _define() -> str:
    """The harness's region mark, the one place it is defined, given to the plugin's build."""
    return f"-DMARK_FD={MARK_FD}"


def plugin_ready(root: Path) -> bool:
    """Whether the plugin in `root` was built from this edgecnn's source and was seen to
    count under this QEMU."""
    stamp = plugin_path(root).with_suffix(".stamp")
    try:
        return plugin_path(root).is_file() and stamp.read_text().strip() == _built_for()
    except (OSError, subprocess.SubprocessError):
        return False


def build_plugin(root: Path, check, log=None) -> Path:
    """Compile the plugin into `root` and see it count (`check(plugin)` runs a marked
    region under it), once per source and QEMU version. BadInput says why it cannot."""
    why = why_not()
    if why:
        raise BadInput(why)
    path = plugin_path(root)
    if plugin_ready(root):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".qemu_count.", suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        proc = subprocess.run(["cc", "-O2", "-shared", "-fPIC", _define(), "-o", tmp, str(SOURCE)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise BadInput(f"the C compiler could not build the counting plugin ({last}); "
                           f"{apt_hint([t for t in TOOLS if t[0] == 'cc'])}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    check(path)
    path.with_suffix(".stamp").write_text(_built_for() + "\n")
    if log:
        log(f"emulated setup: built the instruction-counting plugin {path}, and it counts")
    return path


def counting_command(cmd: list[str], root: Path, out: Path, plugin: Path | None = None) -> tuple[list[str], dict]:
    """An emulation command line (emulation.command's) made to count into `out`: the
    dynamic QEMU with the plugin, which otherwise runs the same."""
    if not cmd or Path(cmd[0]).name not in ("qemu-aarch64", "qemu-aarch64-static"):
        raise ValueError(f"not an aarch64 emulation command: {cmd[:1]}")
    return ([shutil.which(QEMU_DYNAMIC) or QEMU_DYNAMIC, "-plugin", str(plugin or plugin_path(root)), *cmd[1:]],
            {OUT_ENV: str(out)})


@dataclass
class Profile:
    """What the plugin wrote: the instructions of each region, and each translation
    block that ran inside them (its instruction words, and its executions summed over
    the regions)."""
    regions: list[float]
    blocks: dict[tuple[int, ...], float] = field(default_factory=dict)

    def per_inference(self, inferences_per_region: int) -> "Profile":
        """The same profile for one inference, where each region held several."""
        k = inferences_per_region
        if k == 1:
            return self
        return Profile([r / k for r in self.regions], {words: n / k for words, n in self.blocks.items()})

    @property
    def per_region(self) -> float:
        """The blocks' instructions per region: their executions, averaged over the regions."""
        return sum(len(words) * n for words, n in self.blocks.items()) / max(len(self.regions), 1)


def read_profile(path: Path) -> Profile:
    regions, blocks = [], {}
    try:
        text = path.read_text()
    except OSError as e:
        raise BadInput(f"the counting plugin wrote nothing to {path} ({e.strerror})") from None
    try:
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "region":
                regions.append(int(rest))
            elif kind == "tb":
                execs, _vaddr, *words = rest.split()
                key = tuple(int(w, 16) for w in words)
                blocks[key] = blocks.get(key, 0) + int(execs)  # one block translated twice
    except ValueError:
        raise BadInput(f"the counting plugin's file {path} is damaged: {line[:80]!r}") from None
    return Profile(regions, blocks)


def disassemble(words) -> dict[int, str]:
    """Each 32-bit instruction word as llvm-mc reads it ("fmla v0.4s, v1.4s, v2.4s"); a
    word it cannot read (none are expected) maps to "udf #0", which costs one slot."""
    unique = sorted(set(words))
    text = "\n".join(" ".join(f"0x{(w >> s) & 0xff:02x}" for s in (0, 8, 16, 24)) for w in unique) + "\n"
    proc = subprocess.run(["llvm-mc", "--disassemble", "-triple=aarch64", f"-mattr={MATTR}", "-show-encoding"],
                          input=text, capture_output=True, text=True, timeout=300)
    found = {}
    for line in proc.stdout.splitlines():
        asm, sep, enc = line.partition("// encoding: [")
        if not sep:
            continue
        b = [int(x, 16) for x in enc.rstrip("]").split(",")]
        found[b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24] = " ".join(asm.split())
    return {w: found.get(w, "udf #0") for w in unique}
