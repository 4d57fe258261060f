"""Where an artifact is judged. A target runs the runtime harness
(`python -m edgecnn.runtime.harness JOB.json`) once per artifact and reads back its JSON.

`local` is this machine, single-stream by default (one thread). The emulated Pi-class
CPUs and ssh:// devices come in later as more classes with the same `run` method.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from .errors import BadInput

HARNESS_TIMEOUT_S = 900
KNOWN = ("local",)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class LocalTarget:
    name = "local"
    emulated = False

    def __init__(self, threads: int = 1):
        self.threads = threads

    def describe(self) -> dict:
        return {"name": self.name, "emulated": self.emulated, "machine": platform.machine(),
                "cpu": _cpu_model(), "cores": os.cpu_count(), "threads": self.threads,
                "python": platform.python_version()}

    def run(self, job: dict, workdir: Path) -> dict:
        """Run one job in a fresh interpreter; a crash becomes an error result, not ours."""
        job = dict(job, threads=self.threads, out=str(workdir / "result.json"))
        job_path = workdir / "job.json"
        job_path.write_text(json.dumps(job))
        result_path = Path(job["out"])
        result_path.unlink(missing_ok=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
        try:
            proc = subprocess.run([sys.executable, "-m", "edgecnn.runtime.harness", str(job_path)],
                                  capture_output=True, text=True, env=env, timeout=HARNESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"status": "error", "reason": f"the harness ran past {HARNESS_TIMEOUT_S} s"}
        if proc.returncode != 0 or not result_path.is_file():
            how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
                   else f"exited with status {proc.returncode}")
            last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "")
            return {"status": "error", "reason": f"the harness {how}" + (f": {last.strip()[:300]}" if last else "")}
        return json.loads(result_path.read_text())


def parse_target(text: str, threads: int) -> LocalTarget:
    if threads < 1:
        raise BadInput(f"--threads must be 1 or more, not {threads}")
    if text == "local":
        return LocalTarget(threads)
    raise BadInput(f"unknown target {text!r}; usable targets: {', '.join(KNOWN)}")
