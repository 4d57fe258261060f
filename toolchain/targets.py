"""Where an artifact is judged. A target runs the runtime harness
(`python -m edgecnn.runtime.harness JOB.json`) once per artifact and reads back its JSON.

- `local`: this machine, single-stream by default (one thread).
- `emulated:cortex-a72` (Raspberry Pi 4), `emulated:cortex-a76` (Raspberry Pi 5): an
  aarch64 Python under QEMU user-mode emulation (see emulation.py) running `runtime/`
  copied as a bundle, on a subset of the test split. Its answers are compared with this
  machine's; its timings are labelled emulated and are not device latencies.
- `emulated:x86-avx2`: this machine's own Python under QEMU's x86-64 emulator as an
  AVX2 CPU without VNNI, whose int8 kernels saturate; the same subset and comparison.
- `ssh://user@host[:port]`: a real device, through the system OpenSSH client: the
  bundle, the artifact and the evaluation data are copied to a temporary folder there,
  the device's Python runs the harness, and the JSON and logits come back.
"""
from __future__ import annotations

import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgecnn.runtime import cpu as cpus, runner_class
from edgecnn.runtime.sandbox import signal_name

from . import emulation, pi_latency
from .errors import BadInput

HARNESS_TIMEOUT_S = 900
EMULATED_SAMPLES = 1000   # test images per artifact under emulation (about 125x slower than native)
EMULATED_BENCH = {"min_runs": 20, "min_seconds": 0.0, "warmup": 2}  # emulated time is not a device's
COUNTED_REGIONS = 3  # regions counted per artifact for a Pi latency estimate (one inference each,
                     # or the runner's count_window): the median, per inference
KNOWN = ("local", *(f"emulated:{m}" for m in emulation.OFFERED), "ssh://user@host[:port]")


def _cpu_model() -> str:
    return cpus.describe()["model"] or platform.processor() or platform.machine()


def _last_line(text: str) -> str:
    return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")[:300]


class HarnessTarget:
    """Runs one job per artifact in a fresh interpreter; a crash becomes an error row."""
    name = ""
    emulated = False
    timeout_s: float = HARNESS_TIMEOUT_S  # one artifact's run, --device-timeout

    def __init__(self, threads: int = 1):
        self.threads = threads

    def describe(self) -> dict:
        raise NotImplementedError

    def _command(self, job_path: Path, workdir: Path) -> tuple[list[str], dict]:
        raise NotImplementedError

    def runs_format(self, fmt: str) -> bool:
        return self.why_not(fmt) is None

    def why_not(self, fmt: str) -> str | None:
        """Why this target cannot run the format's artifacts, or None when it can."""
        return None

    def _job(self, job: dict, workdir: Path) -> dict:
        """The job as this target runs it, or a skip row (with "status") when it cannot."""
        return job

    def run(self, job: dict, workdir: Path) -> dict:
        workdir.mkdir(parents=True, exist_ok=True)
        job = self._job(dict(job, threads=self.threads, out=str(workdir / "result.json")), workdir)
        if "status" in job:  # the target cannot run this artifact: a skip row
            return job
        job_path = workdir / "job.json"
        job_path.write_text(json.dumps(job))
        result_path = Path(job["out"])
        result_path.unlink(missing_ok=True)
        cmd, env = self._command(job_path, workdir)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1",
                                           **thread_env(self.threads), **env))
        except subprocess.TimeoutExpired:
            return {"status": "error", "reason": f"the harness ran past {self.timeout_s:g} s on {self.name} "
                                                 f"(--device-timeout)"}
        if proc.returncode != 0 or not result_path.is_file():
            how = (f"crashed ({signal_name(-proc.returncode)})" if proc.returncode < 0
                   else f"exited with status {proc.returncode}")
            last = _last_line(proc.stderr)
            return {"status": "error", "reason": f"the harness {how} on {self.name}" + (f": {last}" if last else "")}
        result = json.loads(result_path.read_text())
        if self.emulated and "latency_ms" in result:
            # emulated time says nothing about a device: kept, but under names no one
            # will put beside real latencies
            for key in ("latency_ms", "infer_ms", "first_ms", "load_ms", "import_ms"):
                result[f"emulated_{key}"] = result.pop(key, None)
        return result


def thread_env(threads: int) -> dict[str, str]:
    """BLAS thread pools are sized when numpy is imported, before the harness reads its
    job, so the thread count also goes into the environment: it caps the NumPy runtime's
    matrix products as the job's count caps the other runtimes' own pools."""
    return {v: str(threads) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


class LocalTarget(HarnessTarget):
    name = "local"

    def describe(self) -> dict:
        return {"name": self.name, "emulated": False, "machine": platform.machine(), "cpu": _cpu_model(),
                "cores": os.cpu_count(), "threads": self.threads, "python": platform.python_version(),
                "int8": cpus.describe()}

    def _command(self, job_path, workdir):
        return [sys.executable, "-m", "edgecnn.runtime.harness", str(job_path)], {}


def runtime_bundle(dest: Path) -> Path:
    """edgecnn/runtime/ alone, as it is copied to a device: numpy plus a runtime is all
    it needs, and nothing of toolchain/ or converters/ comes along."""
    from edgecnn import runtime
    if not (dest / "edgecnn" / "runtime").is_dir():
        (dest / "edgecnn").mkdir(parents=True, exist_ok=True)
        (dest / "edgecnn" / "__init__.py").write_text("")
        shutil.copytree(Path(runtime.__file__).parent, dest / "edgecnn" / "runtime",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


COUNT_FILE = "count.txt"


class EmulatedTarget(HarnessTarget):
    emulated = True

    def __init__(self, cpu: str, threads: int = 1, samples: int = EMULATED_SAMPLES):
        super().__init__(threads)
        self.cpu, self.samples, self.name = cpu, samples, f"emulated:{cpu}"
        self.arch = emulation.CPUS[cpu]["arch"]
        self.estimates = True  # count instructions for a Pi latency estimate, where this core has a model
        self._counting = False  # whether the job being run is counted (one job at a time per target)

    def why_no_estimate(self) -> str | None:
        """Why this target's rows get no Pi latency estimate, or None when they do."""
        if self.cpu not in pi_latency.CORES:
            return f"no Pi latency model for {self.cpu}"
        if not self.estimates:
            return "estimates were turned off (--no-pi-estimates)"
        if self.threads != 1:  # the plugin's counters are per process, and idle pool threads spin
            return f"estimates count one thread, and this run has --threads {self.threads}"
        return emulation.status()["counting"]

    def describe(self) -> dict:
        python = platform.python_version() if self.arch == "x86_64" else "3.11"
        return {"name": self.name, "emulated": True, "machine": self.arch,
                "cpu": f"{self.cpu} ({emulation.CPUS[self.cpu]['board']}) under QEMU user-mode emulation",
                "threads": self.threads, "python": python, "samples": self.samples,
                "int8": cpus.parse(emulation.cpuinfo(self.cpu, cores=1), self.arch)}

    def setup(self, log=None) -> dict:
        if self.arch == "x86_64":
            return emulation.setup_x86(self.cpu, log=log)
        return emulation.setup(log=log)

    def why_not(self, fmt):
        # the x86 models run this machine's own Python, which has every runtime; the ARM
        # boards have the runtimes whose wheels emulation provisions, some as an opt-in
        cls = runner_class(fmt)
        if self.arch == "x86_64":
            return None
        if cls.wheel is None:
            return cls.not_emulated
        extra = cls.emulated_extra
        if extra and not emulation.status()["extras"].get(extra):
            return (f"{cls.runtime} is not provisioned on the emulated boards: add it with "
                    f"{emulation.extra_hint(extra)} (it states the download size first)")
        return None

    def _job(self, job, workdir):
        why = self.why_not(job["format"])
        if why:
            cls = runner_class(job["format"])
            return {"status": "skipped", "runtime": cls.runtime, "reason": why,
                    "hint": f"validate {cls.suffix} on a real device: --target ssh://user@host"}
        counted = {"count": COUNTED_REGIONS} if self._counting else {}
        if job.get("predict"):  # every image the user named
            return dict(job, **counted)
        return dict(job, data=str(self._subset(Path(job["data"]), workdir)), bench=EMULATED_BENCH, **counted)

    def run(self, job, workdir):
        (workdir / COUNT_FILE).unlink(missing_ok=True)
        # a validation row or a prediction is counted (explain's layer taps are not), in
        # the same process: the counting QEMU runs the row, then three more regions
        wanted = self.estimates and self.cpu in pi_latency.CORES and not job.get("taps_out")
        why = self.why_no_estimate() if wanted else None
        self._counting = wanted and why is None
        result = super().run(job, workdir)
        if self._counting and result.get("status") == "error":
            # the row must not be lost to the counting: it runs again as it would without
            failed = result.get("reason") or "no result"
            self._counting = False
            result = super().run(job, workdir)
            why = f"the counting QEMU could not run it ({failed})"
        # what the harness counted is told once, in pi_count
        regions, per_region = result.pop("regions", None), result.pop("inferences_per_region", 1)
        if result.get("status") == "ok" and regions:
            result["pi_count"] = self._counted(workdir / COUNT_FILE, per_region)
        elif result.get("status") == "ok" and wanted:  # the user is told why there is no estimate
            result["pi_estimate_skipped"] = why or "the harness counted no inference"
        self._counting = False
        return result

    def _counted(self, path: Path, inferences_per_region: int = 1) -> dict:
        """The counted regions as the plugin wrote them, and per inference their median
        and the cycles the core's model makes of them."""
        from . import counting
        try:
            counted = counting.read_profile(path)
            if not counted.regions:
                return {"error": "the counting plugin saw no marked inference"}
            profile = counted.per_inference(inferences_per_region)
            median, spread = pi_latency.median_spread(profile.regions)
            model = pi_latency.cycles(profile, self.cpu)
        except (BadInput, RuntimeError, OSError, subprocess.SubprocessError) as e:
            return {"error": str(e)}
        return {"regions": counted.regions, "inferences_per_region": inferences_per_region,
                "instructions": round(median), "spread": round(spread, 6),
                "cycles": round(model["cycles"]), "modelled_share": round(model["modelled_share"], 4),
                "mix": {k: round(v) for k, v in list(model["mix"].items())[:12]}}

    def _subset(self, data: Path, workdir: Path) -> Path:
        """The first `samples` test images. Each target has a workdir of its own: targets
        run in parallel."""
        path = workdir / f"{data.stem}-first{self.samples}.npz"
        if not path.is_file():
            with np.load(data) as z:
                arrays = {k: (z[k] if k == "sample" else z[k][:self.samples]) for k in z.files}
            np.savez(path, **arrays)
        return path

    def _command(self, job_path, workdir):
        cmd, env = emulation.command(self.cpu, ["-m", "edgecnn.runtime.harness", str(job_path)])
        if self.arch == "aarch64":  # its own Python: the runtime alone comes along, as to a device
            bundle = runtime_bundle(workdir / "bundle")
            env["PYTHONPATH"] = f"{bundle}{os.pathsep}{env['PYTHONPATH']}"
        if self._counting:  # the same run, in the QEMU that counts
            from . import counting
            cmd, more = counting.counting_command(cmd, emulation.cache_root(), workdir / COUNT_FILE)
            env.update(more)
        return cmd, env


def parse_target(text: str, threads: int, ssh: dict | None = None, timeout_s: float | None = None):
    if threads < 1:
        raise BadInput(f"--threads must be 1 or more, not {threads}")
    if timeout_s is not None and not (math.isfinite(timeout_s) and timeout_s > 0):
        raise BadInput(f"--device-timeout must be a number of seconds above 0, not {timeout_s:g}")
    target = _parse(text, threads, ssh)
    if timeout_s is not None:
        target.timeout_s = timeout_s
    return target


def _parse(text: str, threads: int, ssh: dict | None):
    if text == "local":
        return LocalTarget(threads)
    if text.startswith("ssh://"):
        return SshTarget(text, threads, **(ssh or {}))
    kind, sep, cpu = text.partition(":")
    if kind == "emulated" and sep:
        if cpu not in emulation.CPUS:
            raise BadInput(f"unknown emulated CPU {cpu!r}; choose {', '.join(emulation.CPUS)}")
        why = emulation.host_runs(cpu)
        if why:
            raise BadInput(why)
        return EmulatedTarget(cpu, threads)
    raise BadInput(f"unknown target {text!r}; usable targets: {', '.join(KNOWN)}")


SSH_CONNECT_TIMEOUT_S = 10
# what OpenSSH says, and what it means for the user
SSH_ERRORS = (
    ("Host key verification failed", "its host key is unknown or has changed, so it is refused; add the key to "
                                     "known_hosts (ssh-keyscan), or pass --ssh-accept-new-host-key for a first "
                                     "connection to a host never seen before"),
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "its host key has changed, so it is refused"),
    ("Permission denied", "it refused the key (check the user, the key and the agent)"),
    ("Connection refused", "it is unreachable (connection refused)"),
    ("timed out", "it is unreachable (connection timed out)"),
    ("Could not resolve hostname", "it is unreachable (the host name does not resolve)"),
    ("No route to host", "it is unreachable (no route to host)"),
)


class SshTarget(HarnessTarget):
    """A real device over the system OpenSSH client in batch mode: the user's ssh config,
    keys and agent work, and host keys are checked (an unknown or changed key is refused
    unless --ssh-accept-new-host-key allows a first connection)."""

    def __init__(self, url: str, threads: int = 1, python: str = "python3", ssh_config: str | None = None,
                 accept_new: bool = False):
        super().__init__(threads)
        rest = url[len("ssh://"):]
        userhost, _, port = rest.rpartition(":") if rest.count(":") == 1 else (rest, "", "")
        if not userhost or "/" in rest or (port and not port.isdigit()):
            raise BadInput(f"target {url!r} is not ssh://[user@]host[:port]")
        self.name, self.host, self.port, self.python = url, userhost, port, python
        self.ssh_config, self.accept_new = ssh_config, accept_new
        self.remote_dir: str | None = None
        self.failure: str | None = None
        self.machine = self.pyver = "?"   # known once connected
        self.sent: set[str] = set()        # data files already on the device

    def describe(self) -> dict:
        return {"name": self.name, "emulated": False, "machine": self.machine, "cpu": f"{self.machine} device",
                "threads": self.threads, "python": self.pyver}

    def _opts(self, port_flag: str) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT_S}",
                "-o", f"StrictHostKeyChecking={'accept-new' if self.accept_new else 'yes'}"]
        if self.ssh_config:
            opts += ["-F", self.ssh_config]
        if self.port:
            opts += [port_flag, self.port]
        return opts

    def _explain(self, stderr: str) -> str:
        for needle, meaning in SSH_ERRORS:
            if needle in stderr:
                return f"{self.name}: {meaning}"
        return f"{self.name}: ssh failed ({_last_line(stderr)})"

    def _ssh(self, command: str, timeout: float = HARNESS_TIMEOUT_S) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", *self._opts("-p"), self.host, command], capture_output=True, text=True,
                              timeout=timeout)

    def _scp(self, sources: list[str], dest: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(["scp", "-q", "-r", *self._opts("-P"), *sources, dest], capture_output=True,
                              text=True, timeout=timeout)

    def setup(self, log=None) -> None:
        """Connect, make a working folder on the device and copy the runtime bundle there.
        A failure is kept and reported on this target's rows: other devices go on."""
        if shutil.which("ssh") is None or shutil.which("scp") is None:
            raise BadInput("the ssh:// targets need the OpenSSH client (ssh and scp) on PATH")
        if self.failure:  # a device that failed once is not waited for again in this command
            return
        log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        try:
            proc = self._ssh(f"{self.python} -c 'import platform, sys; print(platform.machine(), "
                             f"platform.python_version())' && mktemp -d /tmp/edgecnn.XXXXXX",
                             timeout=SSH_CONNECT_TIMEOUT_S + 60)
        except subprocess.TimeoutExpired:
            self.failure = f"{self.name}: it did not answer within {SSH_CONNECT_TIMEOUT_S + 60} s"
            return
        if proc.returncode == 255:
            self.failure = self._explain(proc.stderr)
            return
        lines = proc.stdout.split()
        if proc.returncode != 0 or len(lines) < 3:
            self.failure = f"{self.name}: its Python {self.python!r} does not run ({_last_line(proc.stderr)})"
            return
        self.machine, self.pyver, self.remote_dir = lines[0], lines[1], lines[2]
        with tempfile.TemporaryDirectory(prefix="edgecnn-bundle-") as tmp:
            bundle = runtime_bundle(Path(tmp))
            copied = self._scp([str(bundle / "edgecnn")], f"{self.host}:{self.remote_dir}/")
        if copied.returncode != 0:
            self.failure = self._explain(copied.stderr)
        else:
            log(f"{self.name}: {self.machine}, Python {self.pyver}, working in {self.remote_dir}")

    def run(self, job: dict, workdir: Path) -> dict:
        if self.failure:
            return {"status": "error", "reason": self.failure}
        workdir.mkdir(parents=True, exist_ok=True)
        d = self.remote_dir
        data_name = f"{Path(job['data']).stem}.npz"
        # what the harness writes besides its result, fetched back to where the job asks
        wanted = {"taps_out": "taps.npz"} if job.get("taps_out") else {"logits_out": "logits.npy"}
        remote = dict(job, threads=self.threads, artifact=f"{d}/{Path(job['artifact']).name}",
                      data=f"{d}/{data_name}", out=f"{d}/result.json", **{k: f"{d}/{n}" for k, n in wanted.items()})
        job_path = workdir / "job.json"
        job_path.write_text(json.dumps(remote))
        sources = [job["artifact"], str(job_path)]
        if data_name not in self.sent:
            sources.append(job["data"])
        copied = self._scp(sources, f"{self.host}:{d}/")
        if copied.returncode != 0:
            return {"status": "error", "reason": self._explain(copied.stderr)}
        self.sent.add(data_name)
        try:
            threads = " ".join(f"{k}={v}" for k, v in thread_env(self.threads).items())
            if os.environ.get("EDGECNN_SYSFS_ROOT"):  # a fake sysfs for the device's state (tests)
                threads += f" EDGECNN_SYSFS_ROOT={shlex.quote(os.environ['EDGECNN_SYSFS_ROOT'])}"
            proc = self._ssh(timeout=self.timeout_s, command=f"cd {d} && rm -f result.json {' '.join(wanted.values())} && "
                             f"PYTHONPATH={d} {threads} {self.python} -m edgecnn.runtime.harness job.json")
        except subprocess.TimeoutExpired:
            return {"status": "error", "reason": f"{self.name}: the harness ran past {self.timeout_s:g} s "
                                                          f"(--device-timeout)"}
        if proc.returncode == 255:
            return {"status": "error", "reason": self._explain(proc.stderr)}
        if proc.returncode != 0:
            last = _last_line(proc.stderr)
            missing = "No module named 'numpy'" in last
            return {"status": "error", "reason": f"{self.name}: " + (
                "the device's Python lacks numpy (pip install numpy)" if missing
                else f"the harness exited with status {proc.returncode}: {last}")}
        for name in ("result.json", *wanted.values()):  # nothing an earlier job left here is read as this one's
            (workdir / name).unlink(missing_ok=True)
        fetched = self._scp([f"{self.host}:{d}/{n}" for n in ("result.json", *wanted.values())], str(workdir))
        if not (workdir / "result.json").is_file():
            # a skipped or failed row writes no logits: the result alone is enough
            fetched = self._scp([f"{self.host}:{d}/result.json"], str(workdir))
            if fetched.returncode != 0:
                return {"status": "error", "reason": self._explain(fetched.stderr)}
        result = json.loads((workdir / "result.json").read_text())
        for key, name in wanted.items():
            if (workdir / name).is_file() and job.get(key):
                os.replace(workdir / name, job[key])
        if result.get("status") == "skipped":
            # on a device the user named, a missing runtime is an environment to fix
            return dict(result, status="error",
                        reason=f"{self.name}: the device lacks {result.get('reason', '').replace(' is not installed', '')}"
                               f" ({result.get('hint', '')})")
        return result

    def probe_runtimes(self) -> list[dict]:
        """What doctor --target shows: each runtime on the device, or what it lacks."""
        script = ("import json; from edgecnn.runtime import RUNNERS, RuntimeMissing, runner_class\n"
                  "out = []\n"
                  "for fmt in RUNNERS:\n"
                  "    cls = runner_class(fmt)\n"
                  "    try: out.append({'format': fmt, 'runtime': cls.runtime, 'usable': True, 'version': cls.probe()})\n"
                  "    except RuntimeMissing as e: out.append({'format': fmt, 'runtime': cls.runtime, 'usable': False,"
                  " 'reason': str(e), 'hint': e.hint})\n"
                  "print(json.dumps(out))\n")
        if self.failure:
            raise BadInput(self.failure)
        proc = subprocess.run(["ssh", *self._opts("-p"), self.host,
                               f"cd {self.remote_dir} && PYTHONPATH={self.remote_dir} {self.python} -"],
                              input=script, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            last = _last_line(proc.stderr)
            if "No module named 'numpy'" in last:
                raise BadInput(f"{self.name}: the device's Python lacks numpy (pip install numpy)")
            raise BadInput(self._explain(proc.stderr) if proc.returncode == 255 else f"{self.name}: {last}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def close(self) -> None:
        """Remove the working folder; a later setup() makes a new one (validate --explain
        uses a device twice), unless this one failed."""
        if self.remote_dir:
            try:
                self._ssh(f"rm -rf {self.remote_dir}", timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.remote_dir, self.sent = None, set()
