"""The fuzz suite's shared pieces: how a file from a user goes wrong, and the property
every loader must keep.

The property: a loader given any file either returns a correct result or raises
BadInput with one clear line (which the CLI prints as `edgecnn: error: ...` and exit
status 2). Any other exception fails the test with its traceback; a hang fails it
through pytest-timeout; a crash of the interpreter would take pytest down with it.

Every loader runs FUZZ_EXAMPLES cases (1,000 unless EDGECNN_FUZZ_EXAMPLES says
otherwise) and each test asserts that it ran them all. Cases are derandomized, so CI
runs the same ones every time; EDGECNN_FUZZ_RANDOM=1 draws new ones.
"""
from __future__ import annotations

import json
import math
import os
import struct

from hypothesis import HealthCheck, settings, strategies as st

from edgecnn.toolchain.errors import BadInput

FUZZ_EXAMPLES = int(os.environ.get("EDGECNN_FUZZ_EXAMPLES", "1000"))
FUZZ_TIMEOUT_S = 900  # per loader; a hang ends the test instead of CI

settings.register_profile(
    "edgecnn-fuzz",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,  # the machine is shared: slow cases are not failures, hangs are (timeout)
    derandomize=os.environ.get("EDGECNN_FUZZ_RANDOM", "") in ("", "0"),
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
fuzz_settings = settings(settings.get_profile("edgecnn-fuzz"))

# values that break parsers: boundaries of the integer widths a header may hold
EXTREME_INTS = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


@st.composite
def corrupted(draw, original: bytes) -> bytes:
    """A damaged copy of a file: truncated, bit-flipped, an integer field overwritten
    with an extreme value, a run of bytes overwritten, grown (junk appended, the file
    doubled), or replaced outright."""
    b = bytearray(original)
    kind = draw(st.sampled_from(("truncate", "flip", "extreme", "overwrite", "grow", "replace")))
    if kind == "replace" or not b:
        return draw(st.binary(max_size=4096))
    if kind == "truncate":
        return bytes(b[:draw(st.integers(0, len(b) - 1))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 16))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if kind == "extreme":
        value = draw(st.sampled_from(EXTREME_INTS))
        packed = struct.pack(draw(st.sampled_from((">I", "<I"))), value)
        # headers live near the start of most formats: favour it
        end = len(b) - 1 if draw(st.booleans()) else min(len(b) - 1, 64)
        i = draw(st.integers(0, end))
        b[i:i + 4] = packed
        return bytes(b)
    if kind == "overwrite":
        i = draw(st.integers(0, len(b) - 1))
        chunk = draw(st.binary(min_size=1, max_size=256))
        b[i:i + len(chunk)] = chunk
        return bytes(b)
    extra = draw(st.binary(min_size=1, max_size=4096)) if draw(st.booleans()) else bytes(b)
    return bytes(b) + extra


# JSON values of every type, extremes included (hand-edited files hold NaN and 1e400)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.sampled_from(EXTREME_INTS)
    | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:8]):
            yield from _paths(v, prefix + (i,))


@st.composite
def mistyped(draw, doc):
    """A JSON-like document with one to three fields replaced by a value of any type,
    removed, or joined by an unknown one."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            return draw(json_values)
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(("replace", "replace", "remove", "add")))
        if action == "remove":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_values)
        else:
            parent[path[-1]] = draw(json_values)
    return doc


def dumps(doc) -> str:
    """JSON as a careless hand edit may leave it: NaN and Infinity allowed."""
    return json.dumps(doc, allow_nan=True)


def outcome(load, *args, **kwargs):
    """Run one case through a loader: its result, or the BadInput it raised, after
    checking that the message is one clear line. Anything else propagates and fails."""
    try:
        return load(*args, **kwargs)
    except BadInput as e:
        assert_one_line(str(e))
        return e


def assert_covered(cases: list) -> None:
    """All the cases ran, and they reached both ends: files that still load, and files
    that are refused."""
    assert len(cases) >= FUZZ_EXAMPLES
    refused = [c for c in cases if isinstance(c, BadInput)]
    assert 0 < len(refused) < len(cases), f"{len(refused)} of {len(cases)} cases refused"
    if os.environ.get("EDGECNN_FUZZ_SUMMARY"):  # what the cases reached, for people (pytest -s)
        from collections import Counter
        import re
        kinds = Counter(re.sub(r"\S*/", "", " ".join(str(c).split()))[:90] for c in refused)
        print(f"\n{len(cases)} cases: {len(cases) - len(refused)} loaded, {len(refused)} refused, "
              f"{len(kinds)} distinct messages, most common:")
        for message, n in kinds.most_common(12):
            print(f"  {n:5d}  {message}")


def assert_one_line(message: str) -> None:
    """What the CLI would print (it joins the message's whitespace into one line) is a
    short, non-empty sentence, not a dump of the file."""
    line = " ".join(message.split())
    assert line, "an error with no message"
    assert "Traceback" not in line, line
    assert len(line) <= 600, f"a message of {len(line)} characters: {line[:200]}..."


def finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
