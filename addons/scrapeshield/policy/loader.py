"""Bounded policy loading: size, YAML shape, alias expansion and compile time, off the event loop.

A policy file is operator input, but it still must not be able to stall or exhaust the shield:
a 434-byte alias bomb (each level nine aliases of the one below) expands to millions of nodes,
and a multi-megabyte policy takes seconds to compile. So, before the compiler sees a node:

1. the file is at most `LoadLimits.max_bytes` long (read with a cap, never whole first);
2. one pass over the YAML *events* (libyaml, no tree built) measures the document as it will be
   expanded: total nodes, nodes reached through aliases, nesting depth. A recursive alias or a
   limit crossed refuses the file with the `file:line:col` of the alias or node that crossed it;
3. only then is the node tree composed (libyaml's composer), and the compiler walks it with a
   deadline (`Reader.check_budget`): a compile that runs past `max_compile_seconds` is refused at
   the node it had reached.

`compile_off_loop` runs all of that in one worker thread, one compile at a time, so serving and
the admin port keep answering during a reload (the loop gets the GIL between the compiler's
bytecodes). A process would isolate memory too, but a compiled policy is made of closures,
which do not cross a process boundary.

The cyclic garbage collector is paused while a policy compiles (`collector_paused`): composing
and compiling allocate millions of objects, and with the collector on, its full passes over them
were most of the compile time (5 MB: 37 s -> about 9 s) and stopped the whole process, event
loop included, for most of a second at a time. A policy tree has no reference cycles (recursive
aliases are refused), so reference counting frees it all the same; and the tree is taken apart
piece by piece (`dismantle`), since freeing it in one cascade also holds the GIL for a second.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    Event,
    ScalarEvent,
)
from yaml.nodes import MappingNode, Node, SequenceNode

from .errors import PolicyError, PolicyInvalid

if TYPE_CHECKING:
    from .lint import PolicyWarning
    from .model import CompiledPolicy

_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it: ~3x faster


@dataclass(frozen=True, slots=True)
class LoadLimits:
    """What a policy may cost. The defaults leave room for policies far larger than real ones
    (the shipped default is 12 KB; a 5 MB policy of 26,000 rules loads within them)."""

    max_bytes: int = 8 * 1024 * 1024
    max_nodes: int = 2_000_000  # YAML nodes once aliases are expanded
    max_alias_nodes: int = 20_000  # of those, nodes reached through aliases
    max_depth: int = 64  # nested mappings/sequences
    max_compile_seconds: float = 120.0  # a 5 MB policy takes ~20 s on a busy 2-core machine


DEFAULT_LIMITS = LoadLimits()


class CompileBudgetExceeded(Exception):  # a signal inside the compiler: compile_bytes turns it into PolicyInvalid
    def __init__(self, node: Node | None) -> None:
        super().__init__("compile budget exceeded")
        self.node = node


def read_policy_file(path: str, limits: LoadLimits = DEFAULT_LIMITS) -> bytes:
    """The file's bytes, refusing (PolicyInvalid) an unreadable file or one over the size limit
    without reading more than the limit."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limits.max_bytes + 1)
    except OSError as exc:
        raise PolicyInvalid([PolicyError(path, 1, 1, f"cannot read policy: {exc.strerror or exc}")]) from None
    check_size(data, path, limits)
    return data


def check_size(data: bytes, filename: str, limits: LoadLimits = DEFAULT_LIMITS) -> None:
    if len(data) > limits.max_bytes:
        raise PolicyInvalid([PolicyError(filename, 1, 1, f"policy is larger than {_mib(limits.max_bytes)} "
                                                         f"(the limit for a policy file)")])


def compose_policy(text: str, filename: str, limits: LoadLimits = DEFAULT_LIMITS) -> Node | None:
    """The YAML node tree of a policy within `limits`, or PolicyInvalid saying where it is not.
    None for an empty document."""
    try:
        _measure(yaml.parse(text, Loader=_YamlLoader), filename, limits)
        node: Node | None = yaml.compose(text, Loader=_YamlLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise PolicyInvalid([PolicyError(filename, line, col, f"YAML syntax: {exc.problem or exc}"
                                         + _syntax_context(exc))]) from None
    except yaml.YAMLError as exc:  # a ReaderError (control character): no mark, a position, two lines
        pos = getattr(exc, "position", None)
        line, col = (text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)) if isinstance(pos, int) else (1, 1)
        raise PolicyInvalid([PolicyError(filename, line, col, f"YAML: {str(exc).splitlines()[0]}")]) from None
    return node


def _syntax_context(exc: yaml.MarkedYAMLError) -> str:
    """Where the construct the parser was reading began: often the real mistake (an unclosed
    bracket or quote, a mis-indented key) lies there, lines above where parsing failed."""
    ctx, mark, problem = exc.context, exc.context_mark, exc.problem_mark
    if not ctx or mark is None or (problem is not None and (mark.line, mark.column) == (problem.line, problem.column)):
        return ""
    what = ctx.removeprefix("while ").removeprefix("parsing ").removeprefix("scanning ")
    return f" (in {what} that starts at line {mark.line + 1}, column {mark.column + 1})"


def _measure(events: Iterator[Event], filename: str, limits: LoadLimits) -> None:
    """One pass over the events: the expanded size of every anchored node, and the limits."""
    sizes: dict[str, int] = {}  # anchor -> expanded node count of its node
    open_anchors: list[str | None] = []  # per open collection, its anchor
    open_sizes: list[int] = []  # per open collection, its expanded size so far
    total = aliased = 0

    def refuse(event: Event, message: str) -> PolicyInvalid:
        mark = event.start_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return PolicyInvalid([PolicyError(filename, line, col, message)])

    for event in events:
        if isinstance(event, AliasEvent):
            alias = event.anchor or ""
            if alias in open_anchors:
                raise refuse(event, f"alias *{alias} refers to a node that contains it (a recursive alias)")
            size = sizes.get(alias)
            if size is None:
                continue  # an undefined alias: the composer reports it, with its position
            aliased += size
            if aliased > limits.max_alias_nodes:
                raise refuse(event, f"aliases expand to more than {limits.max_alias_nodes:,} nodes "
                                    "(an alias bomb?)")
        elif isinstance(event, ScalarEvent):
            size = 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, CollectionStartEvent):
            if len(open_sizes) >= limits.max_depth:
                raise refuse(event, f"nested more than {limits.max_depth} levels deep")
            open_anchors.append(event.anchor)
            open_sizes.append(1)
            continue
        elif isinstance(event, CollectionEndEvent) and open_sizes:
            anchor, size = open_anchors.pop(), open_sizes.pop()
            if anchor:
                sizes[anchor] = size
            if open_sizes:
                open_sizes[-1] += size
            continue
        else:
            continue
        total += size
        if total > limits.max_nodes:
            raise refuse(event, f"policy has more than {limits.max_nodes:,} YAML nodes once aliases are expanded")
        if open_sizes:
            open_sizes[-1] += size


FREEZE_ABOVE = 50_000  # GC-tracked objects a compile left behind that are worth freezing (a ~1 MB policy)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic GC pass inside the block, and none later over what a large block kept.

    Before: one full collection, so that the block starts with an empty young generation.
    After: when the block kept more than FREEZE_ABOVE tracked objects (a multi-megabyte policy:
    hundreds of thousands), `gc.freeze()` moves them out of the collector's sight; left in the
    young generation, the first pass after the block walks them all at once, the whole process
    stopped, and every full pass after it again. A frozen object is still freed by reference
    counting when the policy is replaced. But the freeze takes every object alive in the process
    along, and one that later dies in a reference cycle is never reclaimed -- a live connection's
    handler, say (~70 objects each) -- so a small policy, whose few objects cost a pass nothing,
    is not frozen. (The serving process freezes its start-up once, before the first client:
    collector.py.)"""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_count()[0] > FREEZE_ABOVE:  # objects allocated and still alive since the collection
            gc.freeze()
        if enabled:
            gc.enable()


def dismantle(root: Node) -> None:
    """Free a composed tree one collection at a time, leaves first. Dropping the last reference to
    a million-node tree frees it in one C-level cascade that holds the GIL throughout (over a
    second for 5 MB, the event loop stopped); taken apart in a Python loop, the loop gets its turns."""
    collections: list[Node] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, (MappingNode, SequenceNode)) and id(node) not in seen:
            seen.add(id(node))
            collections.append(node)
            for item in node.value:
                if isinstance(item, tuple):
                    stack.extend(item)
                else:
                    stack.append(item)
    while collections:
        collections.pop().value = []


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


# -- off the event loop -----------------------------------------------------------------------------
# One worker: two reloads never compile at once (memory), and a second waits for the first.
_EXECUTOR: concurrent.futures.ThreadPoolExecutor | None = None


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy-compile")
    return _EXECUTOR


async def compile_off_loop(data: bytes, filename: str, limits: LoadLimits = DEFAULT_LIMITS) -> CompiledPolicy:
    """`compile_bytes` in the policy worker thread; raises what it raises (PolicyInvalid)."""
    from .compiler import compile_bytes

    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(compile_bytes, data, filename, limits=limits))


async def lint_off_loop(data: bytes, filename: str) -> list[PolicyWarning]:
    """`lint_bytes` in the policy worker thread, for a policy that has just compiled (so its size
    and aliases are within the limits already)."""
    from .lint import lint_bytes

    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(lint_bytes, data, filename))
