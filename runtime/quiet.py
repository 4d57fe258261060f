"""Silence what libraries print on the process's own stdout and stderr.

Converters print SavedModel dumps and quantizer chatter, and runtimes announce their
delegates, partly from C++ code that Python's sys.stdout/sys.stderr never see, so the
file descriptors themselves are redirected. Errors still surface as exceptions.
"""
from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet(stdout: bool = True, stderr: bool = True):
    fds = [fd for fd, on in ((1, stdout), (2, stderr)) if on]
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(devnull, fd)
        with open(os.devnull, "w") as sink, contextlib.ExitStack() as stack:
            if stdout:
                stack.enter_context(contextlib.redirect_stdout(sink))
            if stderr:
                stack.enter_context(contextlib.redirect_stderr(sink))
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, keep in saved.items():
            os.dup2(keep, fd)
            os.close(keep)
        os.close(devnull)
