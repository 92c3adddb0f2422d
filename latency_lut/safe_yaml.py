"""The one way this package reads YAML: safe tags only, bounded in bytes, in expanded size and in depth.

``yaml.safe_load`` never runs ``!!python/object`` tags, but it still lets a small file expand without bound
through aliases (the "billion laughs": nine levels of ten aliases each are 10^9 nodes), recurse until the
interpreter's stack ends, or block forever on a named pipe. Every YAML reader of the package (device descriptors,
search spaces, ...) goes through :func:`load_yaml` or :func:`loads_yaml` instead, and gets each of those as a
one-line error of its own class that names the file and what to do.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from latency_lut.errors import LatencyLutError

MAX_BYTES = 1 << 20  # 1 MiB: a descriptor or a space is a few KiB
MAX_NODES = 100_000  # scalars, lists and mappings after every alias is expanded
MAX_DEPTH = 64  # nesting of lists and mappings


class YAMLLimitError(LatencyLutError):
    """A YAML document over the size, expansion or depth limits (the caller's own error class is used instead
    when one is given)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that checks the composed document's expanded size and depth before constructing anything."""

    max_nodes = MAX_NODES
    max_depth = MAX_DEPTH

    def compose_document(self) -> Any:
        node = super().compose_document()
        _check_node(node, self.max_nodes, self.max_depth)
        return node


class _Over(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _check_node(root: yaml.Node, max_nodes: int, max_depth: int) -> None:
    """Expanded node count (an alias counts as the whole node it names) and depth, iteratively (no recursion)."""
    memo: dict[int, int] = {}
    on_path: set[int] = set()
    # Post-order walk: (node, depth, children pushed?)
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        key = id(node)
        if expanded:
            on_path.discard(key)
            kids = _children(node)
            memo[key] = min(1 + sum(memo[id(k)] for k in kids), max_nodes + 1)
            continue
        if key in memo:
            continue
        if key in on_path:
            raise _Over("an alias refers to a node that contains it (a recursive structure)")
        if depth > max_depth:
            raise _Over(f"it nests deeper than {max_depth} levels")
        on_path.add(key)
        stack.append((node, depth, True))
        for k in _children(node):
            if id(k) not in memo:
                stack.append((k, depth + 1, False))
    if memo[id(root)] > max_nodes:
        raise _Over(f"its aliases expand to more than {max_nodes} values (an alias bomb?)")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def loads_yaml(text: str, source: str, *, error: type[LatencyLutError] = YAMLLimitError,
               max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one YAML document from ``text``; any problem is ``error`` naming ``source``."""
    loader = None
    try:
        loader = _Loader(text)  # the reader already rejects control characters here
        loader.max_nodes, loader.max_depth = max_nodes, max_depth
        return loader.get_single_data()
    except _Over as e:
        raise error(f"{source} is not accepted: {e.why}; write the values out plainly") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise error(f"{source} is not valid YAML{where}: {e.problem or e.context}; fix the file") from None
    except yaml.YAMLError as e:
        raise error(f"{source} is not valid YAML: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    except RecursionError:
        raise error(f"{source} is not accepted: it nests too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml(path: str | Path, *, what: str = "YAML file", error: type[LatencyLutError] = YAMLLimitError,
              max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """Read and parse the YAML file ``path`` (``what`` names it in errors: "device descriptor x.yaml ...")."""
    p = Path(path)
    name = f"{what} {p}"
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{name} is not a regular file (a folder, pipe or device); give the path of a .yaml file")
        if st.st_size > max_bytes:
            raise error(f"{name} is {st.st_size} bytes, over the {max_bytes} byte limit of a {what}")
        with open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{name} does not exist") from None
    except OSError as e:
        raise error(f"{name} cannot be read: {e.strerror}") from None
    if len(data) > max_bytes:
        raise error(f"{name} is over the {max_bytes} byte limit of a {what}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{name} is not UTF-8 text (byte {e.start} is {data[e.start]:#04x}); is it the right "
                    "file?") from None
    return loads_yaml(text, name, error=error, max_nodes=max_nodes, max_depth=max_depth)
