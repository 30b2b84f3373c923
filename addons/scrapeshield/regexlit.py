"""What literal text a regular expression needs, read from its source with a parser of our own.

Two uses, one parser: the crawler User-Agent index (`required_literals`: a literal every match
must contain, per top-level branch) and the rule plan's path guards (`anchored_first_segments`:
the first path segments a `^/seg/...` pattern can match).

The parser understands a conservative subset of Python's syntax -- literals, escapes, `.`,
classes, groups (plain, `(?:`, `(?P<name>`), alternation, quantifiers, `^ $ \\A \\Z` -- and gives
up (None) on anything else (look-arounds, inline flags, back-references, ...). Giving up is
always safe: the callers then treat the pattern as "could match anything".
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_STRINGS = 256  # a literal-string set larger than this is not worth keeping


@dataclass(frozen=True, slots=True)
class Chars:
    """One character from a set; `chars` None: not a small literal set (`.`, `\\d`, `[a-z]`, ...)."""

    chars: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class Anchor:
    kind: str  # "^", "$", "A" (\A), "Z" (\Z), "b" (\b or \B)


@dataclass(frozen=True, slots=True)
class Group:
    branches: tuple[tuple[Item, ...], ...]


@dataclass(frozen=True, slots=True)
class Item:
    atom: Chars | Anchor | Group
    low: int = 1  # repeat bounds; high None = unbounded
    high: int | None = 1


Branches = tuple[tuple[Item, ...], ...]


class _Unsupported(Exception):
    pass


def parse(pattern: str) -> Branches | None:
    """The pattern as alternatives of item sequences, or None when it uses anything not understood."""
    try:
        branches, end = _alternation(pattern, 0)
    except (_Unsupported, IndexError):
        return None
    return branches if end == len(pattern) else None


def _alternation(p: str, i: int) -> tuple[Branches, int]:
    branches: list[tuple[Item, ...]] = []
    while True:
        seq, i = _sequence(p, i)
        branches.append(seq)
        if i < len(p) and p[i] == "|":
            i += 1
            continue
        return tuple(branches), i


def _sequence(p: str, i: int) -> tuple[tuple[Item, ...], int]:
    items: list[Item] = []
    while i < len(p) and p[i] not in "|)":
        atom, i = _atom(p, i)
        low, high, i = _quantifier(p, i)
        if isinstance(atom, Anchor) and (low, high) != (1, 1):
            raise _Unsupported
        items.append(Item(atom, low, high))
    return tuple(items), i


def _atom(p: str, i: int) -> tuple[Chars | Anchor | Group, int]:
    ch = p[i]
    if ch == "\\":
        return _escape(p[i + 1]), i + 2
    if ch == "[":
        return _char_class(p, i)
    if ch == "(":
        if p.startswith("(?:", i):
            i += 3
        elif p.startswith("(?P<", i):
            i = p.index(">", i) + 1
        elif p.startswith("(?", i):
            raise _Unsupported  # inline flags, look-arounds, comments, conditionals
        else:
            i += 1
        branches, i = _alternation(p, i)
        if i >= len(p) or p[i] != ")":
            raise _Unsupported
        return Group(branches), i + 1
    if ch == ".":
        return Chars(None), i + 1
    if ch in "^$":
        return Anchor(ch), i + 1
    if ch in "?*+{}]":
        raise _Unsupported  # a quantifier with nothing to repeat, or a stray bracket
    return Chars(frozenset(ch)), i + 1


def _escape(nxt: str) -> Chars | Anchor:
    if nxt in "AZ":
        return Anchor(nxt)
    if nxt in "bB":
        return Anchor("b")
    if nxt.isdigit() or nxt in "xuUNgk":
        raise _Unsupported  # back-references and numeric escapes: not worth decoding
    if nxt.isalpha():
        return Chars(None)  # \d \s \w \n ...: a class (or a control character), not literal text
    return Chars(frozenset(nxt))


def _char_class(p: str, i: int) -> tuple[Chars, int]:
    j = i + 1
    negated = j < len(p) and p[j] == "^"
    if negated:
        j += 1
    members: set[str] = set()
    literal = not negated
    first = True
    while True:
        ch = p[j]
        if ch == "]" and not first:
            return Chars(frozenset(members) if literal and members else None), j + 1
        first = False
        if ch == "[" and p[j + 1:j + 2] in (":", "=", "."):
            raise _Unsupported  # reserved for future set syntax
        if ch == "\\":
            ch = p[j + 1]
            if ch.isalnum():
                literal = False  # \d, \w, \x41 ...
            j += 2
        else:
            j += 1
        if p[j:j + 1] == "-" and p[j + 1:j + 2] not in ("]", ""):
            literal = False  # a range
        members.add(ch)


def _quantifier(p: str, i: int) -> tuple[int, int | None, int]:
    if i >= len(p):
        return 1, 1, i
    ch = p[i]
    if ch == "?":
        low, high, i = 0, 1, i + 1
    elif ch == "*":
        low, high, i = 0, None, i + 1
    elif ch == "+":
        low, high, i = 1, None, i + 1
    elif ch == "{":
        close = p.find("}", i)
        if close < 0:
            raise _Unsupported
        lo_text, comma, hi_text = p[i + 1:close].partition(",")
        if not lo_text.isdigit() or (hi_text and not hi_text.isdigit()):
            raise _Unsupported  # `{` as a literal, `{,n}`: leave them to `re`
        low = int(lo_text)
        high = None if comma and not hi_text else int(hi_text) if comma else low
        i = close + 1
    else:
        return 1, 1, i
    if i < len(p) and p[i] in "?+":
        i += 1  # lazy or possessive: the same bounds
    return low, high, i


# -- required literals (the crawler User-Agent index) ------------------------------------------

def required_literals(pattern: str, min_length: int = 3) -> list[str] | None:
    """For each top-level branch, the longest run of characters every match of it contains;
    None when a branch has none of at least `min_length` (or the pattern is not understood)."""
    branches = parse(pattern)
    if branches is None:
        return None
    out: list[str] = []
    for seq in branches:
        best = _longest_run(seq)
        if len(best) < min_length:
            return None
        out.append(best)
    return out


def _longest_run(seq: tuple[Item, ...]) -> str:
    runs: list[str] = []
    cur: list[str] = []
    for item in seq:
        atom = item.atom
        one_char = isinstance(atom, Chars) and atom.chars is not None and len(atom.chars) == 1
        if not one_char or item.low == 0:
            runs.append("".join(cur))
            cur = []
            continue
        assert isinstance(atom, Chars) and atom.chars is not None
        cur.append(next(iter(atom.chars)))
        if item.high != 1:  # repeated: what follows is not adjacent to the first occurrence
            runs.append("".join(cur))
            cur = []
    runs.append("".join(cur))
    return max(runs, key=len)


# -- anchored first path segments (the rule plan's path_regex guards) ----------------------------

def anchored_first_segments(pattern: str) -> frozenset[str] | None:
    """The first path segments a pattern can match when every branch has the shape
    `^/<literal text>/...` (or ends the path there: `^/seg$`); None otherwise. `$` also matches
    before a final newline, so `^/a$` gives {"a", "a\\n"}."""
    branches = parse(pattern)
    if branches is None:
        return None
    segments: set[str] = set()
    for seq in branches:
        found = _anchored(seq)
        if found is None:
            return None
        segments |= found
        if len(segments) > MAX_STRINGS:
            return None
    return frozenset(segments) if segments else None


def _anchored(seq: tuple[Item, ...]) -> set[str] | None:
    if len(seq) < 2 or not _is_anchor(seq[0], "^", "A") or not _is_char(seq[1], "/"):
        return None
    prefixes = {""}
    for item in seq[2:]:
        if _is_char(item, "/") or _is_anchor(item, "Z"):
            return prefixes  # the path starts with "/<prefix>/", or is "/<prefix>"
        if _is_anchor(item, "$"):
            return prefixes | {p + "\n" for p in prefixes}
        strings = _literal_strings((item,))
        if strings is None:
            return None
        prefixes = {p + s for p in prefixes for s in strings}
        if len(prefixes) > MAX_STRINGS:
            return None
    return None  # the segment may go on: "^/api" also matches "/apiary"


def _literal_strings(seq: tuple[Item, ...]) -> set[str] | None:
    """Every string a sequence of single literals, literal sets and groups of them matches,
    none containing '/'; None for anything else (repeats, wildcards, anchors)."""
    out = {""}
    for item in seq:
        if (item.low, item.high) != (1, 1):
            return None
        atom = item.atom
        if isinstance(atom, Chars):
            if atom.chars is None or "/" in atom.chars:
                return None
            choices: set[str] = set(atom.chars)
        elif isinstance(atom, Group):
            choices = set()
            for branch in atom.branches:
                sub = _literal_strings(branch)
                if sub is None:
                    return None
                choices |= sub
        else:
            return None
        out = {o + c for o in out for c in choices}
        if len(out) > MAX_STRINGS:
            return None
    return out


def _is_char(item: Item, ch: str) -> bool:
    atom = item.atom
    return isinstance(atom, Chars) and atom.chars == frozenset(ch) and (item.low, item.high) == (1, 1)


def _is_anchor(item: Item, *kinds: str) -> bool:
    return isinstance(item.atom, Anchor) and item.atom.kind in kinds
