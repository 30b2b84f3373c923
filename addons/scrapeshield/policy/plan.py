"""The rule plan: which of a policy's rules one request can match at all. Part of the compiled policy."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..memo import remember
from ..netaddr import CidrSet
from .matchers import first_segment, guard_of, is_ua_only
from .model import Predicate, Rule

if TYPE_CHECKING:
    from ..context import DecisionContext


class RulePlan:
    """Which of a policy's rules a request can match at all, from the guards of their predicates
    (necessary conditions, see `policy/matchers.py`): the first path segment, the method, the
    presence of a header, the client address in a CIDR set.

    `candidates()` returns the rules in policy order minus rules whose predicate is certainly
    false for the request, so the decision is exactly that of a pass over every rule. Candidate
    lists are cached per combination of holding atoms; the combinations are bounded by the
    policy, not by the traffic.

    Rules whose whole match is one `user_agent` condition (bad-bot lists) depend on the UA alone:
    which of them match is remembered per UA string (bounded), so a request pays one lookup for
    all of them instead of one regex search each.
    """

    __slots__ = (
        "_always",
        "_by_atom",
        "_cache",
        "_hdrs",
        "_ip_sets",
        "_ip_union",
        "_methods",
        "_segs",
        "_trivial",
        "_ua_memo",
        "_ua_rules",
        "rules",
    )

    _CACHE_MAX = 4096
    _UA_MEMO_MAX = 4096
    _UA_MEMO_MAX_LEN = 512

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        always: list[int] = []
        ua_rules: list[tuple[int, Predicate]] = []
        by_atom: dict[tuple[str, object], list[int]] = {}
        for i, rule in enumerate(rules):
            guard = guard_of(rule.match)
            if not guard:
                if is_ua_only(rule.match):
                    ua_rules.append((i, rule.match))
                else:
                    always.append(i)
                continue
            for atom in guard:
                by_atom.setdefault(atom, []).append(i)
        self._ua_rules = tuple(ua_rules)
        self._ua_memo: dict[str, tuple[int, ...]] = {}
        self._trivial = not by_atom and not ua_rules
        self._always = always
        self._segs = frozenset(v for k, v in by_atom if k == "seg")
        self._methods = frozenset(v for k, v in by_atom if k == "method")
        self._hdrs = frozenset(v for k, v in by_atom if k == "hdr")
        ip_sets: list[CidrSet] = [v for k, v in by_atom if k == "ip" and isinstance(v, CidrSet)]
        self._ip_sets = tuple(enumerate(ip_sets))
        self._ip_union = CidrSet.of(c for s in ip_sets for c in s.source) if ip_sets else None
        # Atoms keyed compactly: ("ip", i) stands for ip_sets[i] (hashing a big CidrSet is slow).
        self._by_atom: dict[tuple[str, object], list[int]] = {}
        for (kind, value), idx in by_atom.items():
            if kind == "ip":
                value = next(i for i, s in self._ip_sets if s is value)
            self._by_atom[(kind, value)] = idx
        self._cache: dict[tuple[tuple[tuple[str, object], ...], tuple[int, ...]], tuple[Rule, ...]] = {}

    def candidates(self, ctx: DecisionContext) -> tuple[Rule, ...]:
        if self._trivial:
            return self.rules
        facts = ctx.facts
        atoms: list[tuple[str, object]] = []
        if self._segs:
            seg = first_segment(facts.path)
            if seg is not None and seg in self._segs:
                atoms.append(("seg", seg))
        if self._methods and facts.method in self._methods:
            atoms.append(("method", facts.method))
        if self._hdrs:
            hdrs = self._hdrs
            present = [name for name in facts.header_map if name in hdrs]
            if present:
                present.sort()
                atoms.extend(("hdr", name) for name in present)
        if self._ip_union is not None:
            ip = facts.ip
            if self._ip_union.contains(ip):
                atoms.extend(("ip", i) for i, s in self._ip_sets if s.contains(ip))
        ua_hits: tuple[int, ...] = ()
        if self._ua_rules:
            ua = facts.user_agent
            hits = self._ua_memo.get(ua)
            if hits is None:
                hits = tuple([i for i, match in self._ua_rules if match(ctx)])
                if len(ua) <= self._UA_MEMO_MAX_LEN:
                    remember(self._ua_memo, ua, hits, self._UA_MEMO_MAX)
            ua_hits = hits
        key = (tuple(atoms), ua_hits)
        rules = self._cache.get(key)
        if rules is None:
            idx = set(self._always)
            idx.update(ua_hits)
            for atom in key[0]:
                idx.update(self._by_atom[atom])
            rules = remember(self._cache, key, tuple(self.rules[i] for i in sorted(idx)), self._CACHE_MAX)
        return rules
