"""The one exception type that the CLI turns into a single line and exit status 2."""


class BadInput(Exception):
    """A user's mistake: bad usage, a missing or corrupt file, an unusable dataset.

    The message is one line that says what is wrong and, where it helps, what to do.
    """


def disk_full(error: BaseException) -> bool:
    """Whether an error (an OSError, or a converter's wrapped one) says the disk is full."""
    import errno
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    return any(s in str(error) for s in ("No space left on device", "Disk quota exceeded", "File too large"))


def brief(error: BaseException, limit: int = 160) -> str:
    """A library's exception as a short clause for a one-line message: its type and the
    start of its text (some quote whole file headers back)."""
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
