"""An emulated Raspberry Pi-class CPU: an aarch64 CPython under QEMU user-mode emulation.

Provisioned by edgecnn itself into the user cache, without root (only QEMU itself is a
system package, `apt-get install qemu-user-static`):

- rootfs/: Debian bookworm's arm64 Python 3.11 and the libraries it needs, fetched with
  apt-get under a private configuration (the host's Debian sources, arm64 only, its own
  state and cache folders: the host's dpkg state is never touched) and unpacked with
  `dpkg -x`;
- site/: the aarch64 wheels of numpy, LiteRT and ONNX Runtime at the host's versions,
  fetched by the host's pip for the aarch64 platform tags;
- cpu-<model>/: per CPU model, a hard-linked copy of rootfs/ with its own
  proc/cpuinfo. QEMU's -L serves that file in place of the host's x86 one; ONNX Runtime
  reads it to pick kernels and crashes on an x86 one (../shared/notes/arm64.md).

Everything is built in a temporary folder and renamed into place, and a stamp records
the versions, so a second use starts at once and a changed stack is provisioned anew.
"""
from __future__ import annotations

import getpass
import json
import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from .errors import BadInput

# The Python 3.11 runtime closure on bookworm arm64 (measured: 36 packages, about 64 MB).
PACKAGES = (
    "libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libsqlite3-0 "
    "libuuid1 libncursesw6 libtinfo6 libreadline8 libcrypt1 libnsl2 libtirpc3 libtirpc-common "
    "libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libzstd1 libgdbm6 "
    "libmd0 libacl1 libselinux1 libpcre2-8-0 media-types gcc-12-base libpython3.11-minimal "
    "libpython3.11-stdlib python3.11-minimal python3.11").split()
# The runtimes that run under emulation, at the host's versions. PyTorch's lite
# interpreter is left out: its aarch64 wheel is 427 MB.
WHEELS = ("numpy", "onnxruntime", "ai-edge-litert")
PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{m}_aarch64" for m in range(17, 37)]

# CPU models: QEMU's name -> what /proc/cpuinfo says on that board.
CPUS = {
    "cortex-a72": {"board": "Raspberry Pi 4", "part": "0xd08", "features": "fp asimd evtstrm crc32 cpuid"},
    "cortex-a76": {"board": "Raspberry Pi 5", "part": "0xd0b",
                   "features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                               "asimdrdm lrcpc dcpop asimddp"},
    # QEMU's default model: kept to show what a broken ARM kernel looks like (its int8
    # TFLite answers are wrong); never a stand-in for a real board
    "max": {"board": "QEMU max (known to compute int8 TFLite wrongly)", "part": "0xd08",
            "features": "fp asimd evtstrm crc32 cpuid"},
}
QEMU_NAMES = ("qemu-aarch64-static", "qemu-aarch64")
QEMU_HINT = "install QEMU user-mode emulation: apt-get install qemu-user-static"
STAMP = "edgecnn-emulated.json"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgecnn" / "emulated"


def qemu() -> str | None:
    return next((p for p in map(shutil.which, QEMU_NAMES) if p), None)


def wanted_versions() -> dict:
    versions = {}
    for name in WHEELS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise BadInput(f"{name} is not installed on this host; it sets the version to emulate") from None
    return {"python": "3.11", "wheels": versions, "packages": len(PACKAGES)}


def status(root: Path | None = None) -> dict:
    """What doctor shows: is QEMU there, is the environment provisioned and current."""
    root = root or cache_root()
    stamp = root / STAMP
    info = {"qemu": qemu(), "root": str(root), "provisioned": False}
    if stamp.is_file():
        try:
            recorded = json.loads(stamp.read_text())
            info["provisioned"] = recorded.get("versions") == wanted_versions()
        except (OSError, ValueError, BadInput):
            pass
    return info


def _run(cmd, what: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        last = next((ln for ln in reversed((proc.stderr or proc.stdout).splitlines()) if ln.strip()), "")
        raise BadInput(f"emulated setup: {what} failed ({last.strip()[:300]})")
    return proc


def _apt_options(work: Path) -> list[str]:
    """A private apt: the host's Debian sources, arm64 only, state and cache of its own."""
    parts = work / "sources.list.d"
    parts.mkdir(parents=True)
    found = 0
    for src in Path("/etc/apt/sources.list.d").glob("*.sources"):
        shutil.copy(src, parts / src.name)
        found += 1
    for src in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        if src.is_file():
            shutil.copy(src, parts / (src.name if src.suffix == ".list" else "host.list"))
            found += 1
    if not found:
        raise BadInput("emulated setup needs Debian's apt sources (/etc/apt/sources.list.d); none found")
    for d in ("state/lists/partial", "cache/archives/partial"):
        (work / d).mkdir(parents=True)
    (work / "status").write_text("")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "root"
    return ["-o", f"Dir::Etc::SourceList={work / 'none.list'}", "-o", f"Dir::Etc::SourceParts={parts}",
            "-o", f"Dir::State={work / 'state'}", "-o", f"Dir::State::status={work / 'status'}",
            "-o", f"Dir::Cache={work / 'cache'}", "-o", "APT::Architecture=arm64",
            "-o", "APT::Architectures=arm64", "-o", f"APT::Sandbox::User={user}", "-q"]


def _rootfs(work: Path, rootfs: Path, log) -> None:
    opts = _apt_options(work / "apt")
    log("emulated setup: fetching Debian's arm64 Python 3.11 (apt-get download) ...")
    _run(["apt-get", *opts, "update"], "apt-get update")
    debs = work / "debs"
    debs.mkdir()
    _run(["apt-get", *opts, "download", *(f"{p}:arm64" for p in PACKAGES)], "apt-get download", cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        _check_members(deb)
        _run(["dpkg-deb", "-x", str(deb), str(rootfs)], f"unpacking {deb.name}")
    if not (rootfs / "usr/bin/python3.11").is_file():
        raise BadInput("emulated setup: python3.11 is missing from the unpacked packages")


def _check_members(deb: Path) -> None:
    """Refuse a package with a file or link that would land outside the folder it is
    unpacked into. (Wheels are unpacked by pip, which refuses such paths itself.)"""
    import tarfile
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
            for member in tar:
                where = escapes(member)
                if where:
                    raise BadInput(f"emulated setup: {deb.name} would write outside its folder ({where}); "
                                   f"refusing to unpack it")
    except tarfile.TarError as e:
        raise BadInput(f"emulated setup: {deb.name} is not a readable package ({e})") from None
    finally:
        proc.stdout.close()
        proc.wait()


def escapes(member) -> str | None:
    """What of a tar member points outside the extraction folder, if anything: its name,
    a hard link's target, or a relative symlink's target. (An absolute symlink stays in
    the emulated root: QEMU resolves it under -L.)"""
    def outside(path: str) -> bool:
        return path.startswith("/") or posixpath.normpath(path).split("/")[0] == ".."
    if outside(member.name):
        return member.name
    if member.islnk() and outside(member.linkname):
        return f"{member.name} links to {member.linkname}"
    if member.issym() and not member.linkname.startswith("/") and \
            outside(posixpath.join(posixpath.dirname(member.name), member.linkname)):
        return f"{member.name} -> {member.linkname}"
    return None


def _site(work: Path, site: Path, versions: dict, log) -> None:
    log("emulated setup: fetching the aarch64 wheels of " + ", ".join(f"{k} {v}" for k, v in versions.items())
        + " (pip download) ...")
    wheels = work / "wheels"
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    common = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", *plat]
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", *common,
          "-d", str(wheels), *(f"{k}=={v}" for k, v in versions.items())], "pip download")
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--no-index", "--target", str(site), *common, *map(str, sorted(wheels.glob("*.whl")))],
         "pip install --target")


def cpuinfo(model: str, cores: int = 4) -> str:
    cpu = CPUS[model]
    block = ("processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 1\n\n")
    return "".join(block.format(i=i, **cpu) for i in range(cores)) + f"Model\t\t: {cpu['board']}\n"


def setup(force: bool = False, root: Path | None = None, log=None) -> dict:
    """Provision (or reuse) the emulated environment; returns its description."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    root = root or cache_root()
    if qemu() is None:
        raise BadInput(f"QEMU user-mode emulation is not installed; {QEMU_HINT}")
    versions = wanted_versions()
    if not force and status(root)["provisioned"]:
        return {"root": str(root), "reused": True, "seconds": 0.0, "versions": versions}
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise BadInput("emulated setup needs apt-get and dpkg-deb (Debian or Ubuntu)")
    t = time.perf_counter()
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    try:
        work = tmp / "work"
        _rootfs(work, tmp / "rootfs", log)
        _site(work, tmp / "site", versions["wheels"], log)
        for model in CPUS:
            cpu_root = tmp / f"cpu-{model}"
            shutil.copytree(tmp / "rootfs", cpu_root, symlinks=True, copy_function=os.link)
            (cpu_root / "proc").mkdir(exist_ok=True)
            (cpu_root / "proc" / "cpuinfo").write_text(cpuinfo(model))
        shutil.rmtree(work)
        (tmp / STAMP).write_text(json.dumps({"versions": versions}, indent=2) + "\n")
        _smoke(tmp, log)
        old = None
        if root.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old", dir=root.parent))
            os.replace(root, old / root.name)
        os.replace(tmp, root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - t
    log(f"emulated setup: ready in {root} ({seconds:.0f} s)")
    return {"root": str(root), "reused": False, "seconds": round(seconds, 1), "versions": versions}


def command(model: str, args: list[str], root: Path | None = None) -> tuple[list[str], dict]:
    """The command line and environment that run the emulated Python with `args`."""
    root = root or cache_root()
    cpu_root = root / f"cpu-{model}"
    return ([qemu() or QEMU_NAMES[0], "-cpu", model, "-L", str(cpu_root), str(cpu_root / "usr/bin/python3.11"),
             *args],
            {"PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(root / "site")})


def _smoke(root: Path, log) -> None:
    """The environment imports its runtimes under each real board's CPU model."""
    for model in ("cortex-a72", "cortex-a76"):
        cmd, env = command(model, ["-c", "import numpy, onnxruntime, ai_edge_litert.interpreter; "
                                         "import platform; print(platform.machine())"], root)
        proc = _run(cmd, f"the emulated Python on {model}", env=dict(os.environ, **env), timeout=300)
        if proc.stdout.strip() != "aarch64":
            raise BadInput(f"emulated setup: the Python on {model} reports {proc.stdout.strip()!r}, not aarch64")
    log("emulated setup: numpy, ONNX Runtime and LiteRT import on cortex-a72 and cortex-a76")
