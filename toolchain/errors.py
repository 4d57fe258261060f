"""The one exception type that the CLI turns into a single line and exit status 2."""


class BadInput(Exception):
    """A user's mistake: bad usage, a missing or corrupt file, an unusable dataset.

    The message is one line that says what is wrong and, where it helps, what to do.
    """


def brief(error: BaseException, limit: int = 160) -> str:
    """A library's exception as a short clause for a one-line message: its type and the
    start of its text (some quote whole file headers back)."""
    text = " ".join(str(error).split())
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
