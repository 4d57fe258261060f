"""What the importers (keras_import.py, torch_import.py) share: the error for a model
the graph vocabulary cannot express, layer names the graph and every twin accept, and
square sizes."""
from __future__ import annotations

import re

from edgecnn.runtime import graph as g

# Names a node may not take: the graph's input, the Keras twin's input layer, and
# attributes of PyTorch's nn.Module (the PyTorch twin names its submodules as the nodes;
# toolchain/torch_net.py refuses these, which a user cannot fix in an imported model).
TAKEN = {g.INPUT, "image", "order", "output"}


class NotVocabulary(ValueError):
    """The model has a layer, or a setting of one, that the graph cannot express."""


def node_name(raw: str, taken: set, reserved=frozenset()) -> str:
    """A graph name for a layer called `raw`: letters, digits and _, starting with a letter
    or _, at most 64 characters, and not in `taken` (which it joins) or `reserved`."""
    name = re.sub(r"\W", "_", str(raw)) or "layer"
    if not re.match(r"[A-Za-z_]", name):
        name = f"l_{name}"
    base, i = name[:56], 1
    name = base
    while name in taken or name in TAKEN or name in reserved:
        i += 1
        name = f"{base}_{i}"
    assert g.NAME.match(name), name
    taken.add(name)
    return name


def square(value, what: str, where: str) -> int:
    """One size from an int or a pair that repeats it; NotVocabulary otherwise."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    if len(set(values)) != 1 or not all(type(v) is int for v in values):
        raise NotVocabulary(f"{where}: {what} {values} is not one square size")
    return int(values[0])
