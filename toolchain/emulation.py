"""An emulated Raspberry Pi-class CPU: an aarch64 CPython under QEMU user-mode emulation.

Provisioned by edgecnn itself into the user cache, without root (only QEMU itself is a
system package, `apt-get install qemu-user-static`):

- rootfs/: Debian bookworm's arm64 Python 3.11 and the libraries it needs, fetched with
  apt-get under a private configuration (the host's Debian sources, arm64 only, its own
  state and cache folders: the host's dpkg state is never touched) and unpacked with
  `dpkg -x`;
- site/: the aarch64 wheels of numpy and each runner's runtime (Runner.wheel) at the host's versions,
  fetched by the host's pip for the aarch64 platform tags;
- cpu-<model>/: per CPU model, a hard-linked copy of rootfs/ with its own
  proc/cpuinfo. QEMU's -L serves that file in place of the host's x86 one; ONNX Runtime
  reads it to pick kernels and crashes on an x86 one (../shared/notes/arm64.md).

Everything is built in a temporary folder and renamed into place, and a stamp records
the versions, so a second use starts at once and a changed stack is provisioned anew.

An x86-64 CPU with AVX2 and no VNNI (`x86-avx2`), the int8 kernels of most x86 CI
runners: this machine's own Python and packages under QEMU's x86-64 user-mode emulator
with `-cpu Haswell`. TCG emulates every instruction, so the runtimes see (through
CPUID) and use only what the emulated model has, whatever this machine's CPU is. Its
provisioning is one folder, `emulated-x86/<model>/` beside the aarch64 one, that QEMU's -L
serves from: a
proc/cpuinfo with the model's flags, so the harness reports the CPU it ran on.
"""
from __future__ import annotations

import fcntl
import getpass
import json
import os
import platform
import posixpath
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from edgecnn.runtime import RUNNERS, runner_class
from edgecnn.runtime.harness import MARK_FD

from . import counting
from .errors import BadInput

# The Python 3.11 runtime closure on bookworm arm64 (measured: 36 packages, about 64 MB).
PACKAGES = (
    "libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libsqlite3-0 "
    "libuuid1 libncursesw6 libtinfo6 libreadline8 libcrypt1 libnsl2 libtirpc3 libtirpc-common "
    "libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libzstd1 libgdbm6 "
    "libmd0 libacl1 libselinux1 libpcre2-8-0 media-types gcc-12-base libpython3.11-minimal "
    "libpython3.11-stdlib python3.11-minimal python3.11").split()


def _emulated_runners(extra: str | None = None) -> list:
    """The runner classes whose runtime an emulated ARM board installs (`wheel`): those of
    the environment every setup makes, or those an opt-in extra adds. The others say why
    not in `not_emulated`."""
    return [cls for cls in map(runner_class, RUNNERS) if cls.wheel and cls.emulated_extra == extra]


def extras() -> tuple[str, ...]:
    """The opt-ins of `device setup emulated --with NAME`."""
    return tuple(dict.fromkeys(cls.emulated_extra for cls in map(runner_class, RUNNERS)
                               if cls.wheel and cls.emulated_extra))


def wheels(extra: str | None = None) -> tuple[str, ...]:
    """The distributions an emulated board installs: numpy (or the extra's own, which
    comes with its dependencies) and each emulated runner's wheel, and what its taps need
    (explain on an emulated board)."""
    return tuple(dict.fromkeys([extra or "numpy",
                                *(w for cls in _emulated_runners(extra) for w in (cls.wheel, *cls.taps_wheels))]))


def _host_versions(dists) -> dict:
    """Each distribution at this host's version, which the board's must match (a local
    label such as +cpu names a build only the host's index has: the board's is PyPI's)."""
    versions = {}
    for dist in dists:
        try:
            versions[dist] = metadata.version(dist).split("+")[0]
        except metadata.PackageNotFoundError:
            raise BadInput(f"{dist} is not installed on this host; it sets the version to emulate") from None
    return versions


def _runtime_modules(extra: str | None = None) -> list[str]:
    """The modules that prove each emulated runtime imports."""
    return list(dict.fromkeys([*(["numpy"] if extra is None else []),
                               *(cls.modules()[0] for cls in _emulated_runners(extra))]))

BOARD_PYTHON = "3.11"  # bookworm's Python, which the board runs
BOARD_GLIBC = 36  # bookworm's glibc 2.36: the newest manylinux_2_N wheel the board's Python runs
PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{m}_aarch64" for m in range(17, BOARD_GLIBC + 1)]

# CPU models: the target's name -> the architecture, QEMU's -cpu, and what /proc/cpuinfo
# says on that board
CPUS = {
    "cortex-a72": {"arch": "aarch64", "board": "Raspberry Pi 4", "part": "0xd08",
                   "features": "fp asimd evtstrm crc32 cpuid"},
    "cortex-a76": {"arch": "aarch64", "board": "Raspberry Pi 5", "part": "0xd0b",
                   "features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                               "asimdrdm lrcpc dcpop asimddp"},
    # QEMU's default model: kept to show what a broken ARM kernel looks like (its int8
    # TFLite answers are wrong); never a stand-in for a real board
    "max": {"arch": "aarch64", "board": "QEMU max (known to compute int8 TFLite wrongly)", "part": "0xd08",
            "features": "fp asimd evtstrm crc32 cpuid"},
    # Haswell without TSX and without the system features TCG cannot offer (QEMU warns on
    # each): AVX2, FMA, F16C, BMI; no AVX-512, no VNNI
    "x86-avx2": {"arch": "x86_64", "qemu_cpu": "Haswell-noTSX,-invpcid,-pcid,-x2apic,-tsc-deadline",
                 "board": "x86-64 with AVX2 and no VNNI (Intel Haswell)",
                 "model": "Intel Core Processor (Haswell, no TSX)",
                 "features": "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush "
                             "mmx fxsr sse sse2 ss syscall nx pdpe1gb rdtscp lm constant_tsc nopl cpuid pni "
                             "pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand "
                             "hypervisor lahf_lm abm fsgsbase bmi1 avx2 smep bmi2 erms xsaveopt"},
}
ARM_CPUS = tuple(m for m, c in CPUS.items() if c["arch"] == "aarch64")
OFFERED = tuple(m for m in CPUS if m != "max")  # the targets people are offered: max is kept for its known fault
X86_HOSTS = ("x86_64", "amd64")
QEMU = {"aarch64": ("qemu-aarch64-static", "qemu-aarch64"), "x86_64": ("qemu-x86_64-static", "qemu-x86_64")}
QEMU_HINT = "install QEMU user-mode emulation: apt-get install qemu-user-static"
STAMP = "edgecnn-emulated.json"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgecnn" / "emulated"


def qemu(arch: str = "aarch64") -> str | None:
    return next((p for p in map(shutil.which, QEMU[arch]) if p), None)


def x86_root() -> Path:
    return cache_root().parent / "emulated-x86"


def host_runs(model: str) -> str | None:
    """Why this machine cannot emulate `model`, or None when it can. The x86 models run
    this machine's own Python, so they need an x86-64 host."""
    machine = platform.machine().lower()
    if CPUS[model]["arch"] == "x86_64" and machine not in X86_HOSTS:
        return (f"emulated:{model} runs this machine's own Python under QEMU's x86-64 emulator, so it needs "
                f"an x86-64 host; this one is {machine}")
    return None


def wanted_versions() -> dict:
    return {"python": BOARD_PYTHON, "wheels": _host_versions(wheels()), "packages": len(PACKAGES)}


def _base_stamp() -> dict:
    """What a current environment's stamp records."""
    return {"versions": wanted_versions()}


def _ready_extras(root: Path) -> list[str]:
    """The opt-in extras provisioned in `root` at this host's versions."""
    return [name for name in extras() if _stamped(extra_site(name, root) / STAMP, lambda n=name: extra_stamp(n))]


def _stamped(stamp: Path, wanted) -> bool:
    """Whether the stamp records every field of wanted() (False when they are unknown here)."""
    try:
        held = json.loads(stamp.read_text())
        return all(held.get(key) == value for key, value in wanted().items())
    except (OSError, ValueError, AttributeError, BadInput):
        return False


def status(root: Path | None = None) -> dict:
    """What doctor shows: is QEMU there, is the environment provisioned and current, and
    which opt-in extras it has."""
    root = root or cache_root()
    info = {"qemu": qemu(), "root": str(root), "provisioned": _stamped(root / STAMP, _base_stamp)}
    ready = _ready_extras(root) if info["provisioned"] else []
    info["extras"] = {name: name in ready for name in extras()}
    info["counting"] = counting.why_not() or (None if counting.plugin_ready(root) else
                                              "the counting plugin is not built: edgecnn device setup emulated")
    return info


def _run(cmd, what: str, **kw) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except subprocess.TimeoutExpired:
        raise BadInput(f"emulated setup: {what} did not finish in {kw['timeout']:.0f} s") from None
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
    downloads = work / "wheels"
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    common = ["--only-binary=:all:", "--python-version", BOARD_PYTHON, "--implementation", "cp", *plat]
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", *common,
          "-d", str(downloads), *(f"{k}=={v}" for k, v in versions.items())], "pip download")
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--no-index", "--target", str(site), *common, *map(str, sorted(downloads.glob("*.whl")))],
         "pip install --target")


# An opt-in extra is named after the distribution it adds together with its dependencies:
# torch, whose aarch64 wheel on PyPI is a CUDA build that loads NVIDIA's CUDA libraries
# even to run on a CPU (gigabytes with them, against some 180 MB for the default set).
# The runners' own wheels in it come without theirs, which are an exporter's. uv resolves
# it: pip evaluates dependency markers for the machine it runs on, not for --platform (it
# then wants x86-only packages), while uv resolves for the aarch64 target and writes the
# result as a lock (PEP 751) that gives each wheel's size before anything is fetched.
UV_TARGET = ["--python-platform", f"aarch64-manylinux_2_{BOARD_GLIBC}", "--python-version", BOARD_PYTHON,
             "--no-config"]  # the user's uv.toml and [tool.uv] are for their projects, not the board


def extra_site(name: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / f"site-{name}"


def extra_versions(name: str) -> dict:
    """The extra's distributions at the host's versions."""
    return _host_versions(wheels(name))


# How an extra's site is laid out. A site stamped with another layout (or none: those
# installed before 2026-11-24 hold no bytecode, and each emulated import compiled torch's
# Python again) is set up anew, as a site of other versions is.
EXTRA_LAYOUT = "bytecode"


def extra_stamp(name: str) -> dict:
    """What a current extra's stamp records: the host's versions, in the current layout."""
    return {"versions": extra_versions(name), "layout": EXTRA_LAYOUT}


def extra_hint(name: str) -> str:
    return f"`edgecnn device setup emulated --with {name}`"


def _lock(uv: str, work: Path, versions: dict, name: str) -> tuple[list[Path], int, int]:
    """The extra resolved for aarch64 into locks, with its download size and package count."""
    import tomllib
    locks = []
    for deps, pins in ((True, [name]), (False, [d for d in versions if d != name])):
        if not pins:
            continue
        lock = work / f"pylock.{'deps' if deps else 'alone'}.toml"
        _run([uv, "pip", "compile", "--quiet", "--no-header", *UV_TARGET, "--format", "pylock.toml",
              *([] if deps else ["--no-deps"]), "-o", str(lock), "-"], f"resolving {', '.join(pins)} for aarch64",
             input="".join(f"{d}=={versions[d]}\n" for d in pins))
        locks.append(lock)
    packages = [p for lock in locks for p in tomllib.loads(lock.read_text())["packages"]]
    # a package may list several wheels for the platform (say cp311 and abi3): count the largest
    size = sum(max((w.get("size", 0) for w in p.get("wheels", ())), default=p.get("sdist", {}).get("size", 0))
               for p in packages)
    return locks, size, len(packages)


def setup_extra(name: str, force: bool = False, root: Path | None = None, log=None) -> dict:
    """Add an opt-in extra to the provisioned environment (setup() first), or reuse it."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    root = root or cache_root()
    stamp = extra_stamp(name)
    versions = stamp["versions"]
    site = extra_site(name, root)
    if not force and status(root)["extras"][name]:
        return {"root": str(site), "reused": True, "seconds": 0.0, "versions": versions}
    from uv import find_uv_bin
    t = time.perf_counter()
    held = open(root / f".{site.name}.lock", "w")
    fcntl.flock(held, fcntl.LOCK_EX)  # one writer: what a killed one left is cleared under the lock
    for stale in root.glob(f".{site.name}.*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{site.name}.", suffix=".partial", dir=root))
    try:
        work = tmp / "work"
        work.mkdir()
        uv = find_uv_bin()
        locks, size, count = _lock(uv, work, versions, name)
        log(f"emulated setup: --with {name} fetches {', '.join(f'{k} {v}' for k, v in versions.items())} for "
            f"aarch64 with their dependencies, {count} packages: {size / 1e9:.1f} GB to download ...")
        for lock in locks:  # with bytecode, as pip's install of the default set has: without it each
            # emulated `import torch` compiles torch's Python again (36 s under QEMU, 19 s with it)
            _run([uv, "pip", "install", "--quiet", "--target", str(tmp / "site"), *UV_TARGET, "--no-deps",
                  "--compile-bytecode", "-r", str(lock)], f"installing {lock.stem}")
        shutil.rmtree(work)
        _smoke(root, log, extra=name, site=tmp / "site")
        (tmp / "site" / STAMP).write_text(json.dumps(dict(stamp, download_bytes=size), indent=2) + "\n")
        old = tmp / "old"
        if site.exists():
            os.replace(site, old)
        os.replace(tmp / "site", site)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        held.close()
    seconds = time.perf_counter() - t
    log(f"emulated setup: --with {name} ready in {site} ({seconds:.0f} s)")
    return {"root": str(site), "reused": False, "seconds": round(seconds, 1), "versions": versions,
            "download_bytes": size, "packages": count}


def cpuinfo(model: str, cores: int = 4) -> str:
    cpu = CPUS[model]
    if cpu["arch"] == "x86_64":
        block = ("processor\t: {i}\nvendor_id\t: GenuineIntel\nmodel name\t: {model}\n"
                 "flags\t\t: {features}\n\n")
        return "".join(block.format(i=i, **cpu) for i in range(cores))
    block = ("processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 1\n\n")
    return "".join(block.format(i=i, **cpu) for i in range(cores)) + f"Model\t\t: {cpu['board']}\n"


def setup(force: bool = False, root: Path | None = None, log=None) -> dict:
    """Provision (or reuse) the emulated environment; returns its description."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    root = root or cache_root()
    if qemu() is None:
        raise BadInput(f"QEMU user-mode emulation is not installed; {QEMU_HINT}")
    stamp = _base_stamp()
    versions = stamp["versions"]
    if not force and status(root)["provisioned"]:
        return {"root": str(root), "reused": True, "seconds": 0.0, "versions": versions,
                "counting": _counting(root, log)}
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise BadInput("emulated setup needs apt-get and dpkg-deb (Debian or Ubuntu)")
    t = time.perf_counter()
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    try:
        work = tmp / "work"
        _rootfs(work, tmp / "rootfs", log)
        _site(work, tmp / "site", versions["wheels"], log)
        for model in ARM_CPUS:
            cpu_root = tmp / f"cpu-{model}"
            shutil.copytree(tmp / "rootfs", cpu_root, symlinks=True, copy_function=os.link)
            (cpu_root / "proc").mkdir(exist_ok=True)
            (cpu_root / "proc" / "cpuinfo").write_text(cpuinfo(model))
        shutil.rmtree(work)
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        _smoke(tmp, log)
        old = None
        for name in extras():  # an opt-in extra is kept: its own stamp says whether it is current
            if extra_site(name, root).is_dir():
                os.replace(extra_site(name, root), extra_site(name, tmp))
        if root.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old", dir=root.parent))
            os.replace(root, old / root.name)
        os.replace(tmp, root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    plugin = _counting(root, log)
    seconds = time.perf_counter() - t
    log(f"emulated setup: ready in {root} ({seconds:.0f} s)")
    return {"root": str(root), "reused": False, "seconds": round(seconds, 1), "versions": versions,
            "counting": plugin}


def _counting(root: Path, log) -> dict:
    """The instruction-counting plugin of the Pi latency estimates, built into `root`
    when this machine has what it takes; else why not."""
    t = time.perf_counter()
    try:
        path = counting.build_plugin(root, lambda plugin: _count_check(root, plugin), log)
    except BadInput as e:  # the boards work without it: only the estimates are missing
        log(f"emulated setup: no Pi latency estimates: {e}")
        return {"ready": False, "reason": str(e)}
    return {"ready": True, "plugin": str(path), "seconds": round(time.perf_counter() - t, 2)}


def _count_check(root: Path, plugin: Path) -> None:
    """One marked region counted on the board's Python, under the plugin just built."""
    marks = (f"import os\nfor w in (1, 2):\n    try:\n        os.lseek({MARK_FD}, w, 0)\n"
             "    except OSError:\n        pass")
    cmd, env = command("cortex-a72", ["-c", marks], root)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "count.txt"
        cmd, more = counting.counting_command(cmd, root, out, plugin)
        proc = _run(cmd, "the counting QEMU", env=dict(os.environ, **env, **more), timeout=300)
        if proc.returncode != 0 or not out.is_file() or not counting.read_profile(out).regions:
            last = (proc.stderr.strip().splitlines() or ["no region was counted"])[-1][:200]
            raise BadInput(f"{counting.QEMU_DYNAMIC} could not count with the plugin ({last})")


def command(model: str, args: list[str], root: Path | None = None) -> tuple[list[str], dict]:
    """The command line and environment that run the emulated Python with `args`. `root`:
    the provisioned folder (for an x86 model, the model's own)."""
    cpu = CPUS[model]
    if cpu["arch"] == "x86_64":
        prefix = root or x86_root() / model
        return ([qemu("x86_64") or QEMU["x86_64"][0], "-cpu", cpu["qemu_cpu"], "-L", str(prefix), sys.executable,
                 *args], {"PYTHONDONTWRITEBYTECODE": "1"})
    root = root or cache_root()
    cpu_root = root / f"cpu-{model}"
    # the default set, then each opt-in extra that is current
    sites = [root / "site", *(extra_site(name, root) for name in _ready_extras(root))]
    return ([qemu() or QEMU["aarch64"][0], "-cpu", model, "-L", str(cpu_root), str(cpu_root / "usr/bin/python3.11"),
             *args],
            {"PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": os.pathsep.join(map(str, sites))})


def _smoke(root: Path, log, extra: str | None = None, site: Path | None = None) -> None:
    """The environment imports its runtimes (or an extra's, from `site`) under each real
    board's CPU model."""
    # an extra's own distribution first: its runners' modules may need it loaded
    modules = list(dict.fromkeys([*([extra] if extra else []), *_runtime_modules(extra)]))
    for model in ("cortex-a72", "cortex-a76"):
        cmd, env = command(model, ["-c", f"import {', '.join(modules)}; import platform; print(platform.machine())"],
                           root)
        if site:  # the new folder alone beside the default set, not an older one being replaced
            env["PYTHONPATH"] = os.pathsep.join([str(root / "site"), str(site)])
        proc = _run(cmd, f"the emulated Python on {model}", env=dict(os.environ, **env), timeout=900)
        if proc.stdout.strip().splitlines()[-1:] != ["aarch64"]:
            raise BadInput(f"emulated setup: the Python on {model} reports {proc.stdout.strip()!r}, not aarch64")
    log(f"emulated setup: {', '.join(modules)} import on cortex-a72 and cortex-a76")


# What the runtimes see of the CPU through CPUID under emulation: numpy's own detection,
# the same instruction the runtimes' dispatchers use (its table is private to numpy, but
# read only here, to prove the emulated model hides this machine's wider instructions).
_X86_PROBE = ("import json, numpy; from numpy._core._multiarray_umath import __cpu_features__ as f; "
              "from edgecnn.runtime import cpu; "
              "print(json.dumps({'cpuid': sorted(k for k, v in f.items() if v), 'cpuinfo': cpu.describe()}))")


def x86_status(model: str) -> dict:
    stamp = x86_root() / model / STAMP
    info = {"qemu": qemu("x86_64"), "root": str(x86_root() / model), "provisioned": False,
            "unusable": host_runs(model)}
    try:
        info["provisioned"] = json.loads(stamp.read_text()).get("python") == sys.executable
    except (OSError, ValueError, AttributeError):
        pass
    return info


def setup_x86(model: str, force: bool = False, log=None) -> dict:
    """The folder QEMU serves /proc/cpuinfo from, and a check that the emulated CPU shows
    AVX2 and hides AVX-512 and VNNI from the runtimes, whatever this machine has."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    why = host_runs(model)
    if why:
        raise BadInput(why)
    if qemu("x86_64") is None:
        raise BadInput(f"QEMU's x86-64 user-mode emulator is not installed; {QEMU_HINT}")
    root = x86_root() / model
    if not force and x86_status(model)["provisioned"]:
        return {"root": str(root), "reused": True, "seconds": 0.0}
    t = time.perf_counter()
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model}.", suffix=".partial", dir=root.parent))
    try:
        (tmp / "proc").mkdir()
        (tmp / "proc" / "cpuinfo").write_text(cpuinfo(model))
        cmd, env = command(model, ["-c", _X86_PROBE], tmp)
        proc = _run(cmd, f"this machine's Python on emulated {model}", env=dict(os.environ, **env), timeout=300)
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
        wider = [f for f in seen["cpuid"] if f.startswith("AVX512")]
        if "AVX2" not in seen["cpuid"] or wider or seen["cpuinfo"]["int8"] != ["avx2"]:
            raise BadInput(f"emulated setup: {model} shows the runtimes {', '.join(seen['cpuid'])}, not AVX2 "
                           f"without AVX-512 and VNNI")
        (tmp / STAMP).write_text(json.dumps({"python": sys.executable, "cpuid": seen["cpuid"]}, indent=2) + "\n")
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - t
    log(f"emulated setup: {model} ready ({seconds:.0f} s): this machine's Python under QEMU sees "
        f"AVX2 and no AVX-512 or VNNI")
    return {"root": str(root), "reused": False, "seconds": round(seconds, 1), "cpuid": seen["cpuid"]}
