"""Opening an artifact that came from a user, in a child process.

A runtime's loader is native code, and a malformed file can crash it: the PyTorch lite
interpreter segfaults on some bit-flipped .ptl files. Whatever opens a file it did not
write itself (`edgecnn inspect`, the fuzz suite) opens it here, so that such a crash
ends the child and comes back as an ArtifactError naming the file.

The children are forked from a multiprocessing forkserver that has imported the
runtimes once (`start`), so each file costs a fork, not an interpreter start. The
forkserver itself never runs a model, so no runtime thread pool is forked half-used.
"""
from __future__ import annotations

import multiprocessing
import os
import resource
import signal

from . import RUNNERS, runner_class, runner_for
from .quiet import quiet
from .runner import ArtifactError, RuntimeMissing

LOAD_TIMEOUT_S = 120.0
# A damaged file can make a loader allocate without end (a bit-flipped .ptl that asks
# the lite interpreter for 24 GB was seen), so the child may grow its address space by
# this much, or by this many times the file's size if that is more; then the runtime's
# allocation fails, and the file is reported as one it cannot load.
LOAD_MEMORY_BYTES = 2 << 30
LOAD_MEMORY_PER_FILE_BYTE = 20
_context = multiprocessing.get_context("forkserver")
_started = False


def start(formats=tuple(RUNNERS)) -> None:
    """Have the forkserver import these formats' runners and runtimes before it forks
    anything; only the first call, before the first `describe`, has an effect."""
    global _started
    if _started:
        return
    modules = []
    for fmt in formats:
        module, _ = RUNNERS[fmt]
        cls = runner_class(fmt)
        modules += [f"{__package__}.{module}", *cls.modules()]
    _context.set_forkserver_preload([__name__, *dict.fromkeys(modules)])
    _started = True


def describe(fmt: str, path, timeout: float = LOAD_TIMEOUT_S) -> dict:
    """Load `path` with its runtime in a child process: the runtime's name and version,
    the input and output tensors, the operator counts, whether it takes batches and the
    runner's concerns about it.
    ArtifactError when the file cannot be loaded, crashes the runtime or hangs it;
    RuntimeMissing when the runtime is not installed."""
    start((fmt,))
    name = os.path.basename(str(path))
    runtime = runner_for(fmt, path).runtime
    receive, send = _context.Pipe(duplex=False)
    child = _context.Process(target=_child, args=(fmt, str(path), send), daemon=True)
    with quiet():  # the first start launches the forkserver, whose imports print (torchao's)
        child.start()
    send.close()
    try:
        if receive.poll(timeout):
            try:
                kind, payload = receive.recv()
            except EOFError:  # the child died before it could answer
                kind, payload = None, None
        else:
            child.kill()
            raise ArtifactError(f"{name}: {runtime} did not finish loading it in {timeout:.0f} s")
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
            child.join()
        receive.close()
    if kind == "ok":
        return payload
    if kind == "missing":
        raise RuntimeMissing(*payload)
    if kind == "error":
        raise ArtifactError(payload)
    code = child.exitcode
    how = f"crashed ({signal_name(-code)})" if code is not None and code < 0 else \
        f"exited with status {code}"
    raise ArtifactError(f"{name}: {runtime} {how} while loading it; the file is not a valid {fmt} artifact")


def signal_name(number: int) -> str:
    """SIGSEGV for 11; a number Python has no name for stays a number."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _child(fmt: str, path: str, send) -> None:
    # the runtimes print to fds 1 and 2 on bad files; the answer goes through the pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    _limit_memory(os.path.getsize(path))
    runner = runner_for(fmt, path)
    try:
        runner.load()
        answer = ("ok", {"runtime": runner.runtime, "version": runner.version,
                         "input": runner.input_spec.to_json(), "output": runner.output_spec.to_json(),
                         "operators": runner.op_counts(), "batchable": runner.batchable,
                         "concerns": runner.concerns()})
    except RuntimeMissing as e:
        answer = ("missing", (e.runtime, e.hint))
    except ArtifactError as e:
        answer = ("error", str(e))
    except Exception as e:  # loaded, but its tensors or graph cannot be read back
        answer = ("error", f"{os.path.basename(path)}: {runner.runtime} cannot read it "
                           f"({type(e).__name__}: {' '.join(str(e).split())[:300]})")
    send.send(answer)
    send.close()


def _limit_memory(file_bytes: int) -> None:
    """Cap this child's address space at what it has now plus the load budget."""
    with open("/proc/self/statm") as f:  # first field: the address space, in pages
        now = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    budget = max(LOAD_MEMORY_BYTES, LOAD_MEMORY_PER_FILE_BYTE * file_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (now + budget, resource.RLIM_INFINITY))
