"""The one exception type that the CLI turns into a single line and exit status 2."""


class BadInput(Exception):
    """A user's mistake: bad usage, a missing or corrupt file, an unusable dataset.

    The message is one line that says what is wrong and, where it helps, what to do.
    """
