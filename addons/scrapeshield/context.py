"""DecisionContext: one request being decided, and what the decision's stages learnt about it.

`RequestFacts` is what the client sent; it never changes. Everything derived while deciding
(the detectors' identity key and signals, the client fingerprint, later the session) lives here,
one context per decision: a shadow policy deciding the same request gets its own context, so
nothing needs saving or restoring between engines.

Match conditions and key parts read a context, not bare facts, so a condition or key part can
use anything a stage found (e.g. `fingerprint`) as well as the facts.

Adding a per-request value: add a slot and its default in `__init__`; a value derived from the
facts alone is computed on first use (a property over a slot), so a policy that never asks for
it never pays for it, and `fork()` shares it with a shadow decision.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from .detectors.classify import request_kind
from .detectors.sequence import extract_ids
from .facts import RequestFacts
from .fingerprint import ClientFingerprint, fingerprint_fields

if TYPE_CHECKING:
    from .policy.model import KeyFunc, KeySpec
    from .session.state import SessionContext

NO_SIGNALS: Mapping[str, float] = MappingProxyType({})


class DecisionContext:
    __slots__ = ("_fingerprint", "_keys", "_kind", "_path_ids", "detector_key", "detector_signals", "facts",
                 "good_bot", "is_asset", "level_signals", "now", "session")

    def __init__(self, facts: RequestFacts, now: float = 0.0) -> None:
        self.facts = facts
        self.now = now  # the decision's clock reading, set by the engine when it starts
        self.detector_key: str | None = None  # set when the engine's detectors observed this request
        self.is_asset = False  # CSS/JS/image/font/media, as the detectors classified it
        self.detector_signals: Mapping[str, float] = NO_SIGNALS
        # Signals read from the store in this decision's batch (session counters): levels that
        # weigh on the score thresholds of this decision without being added to the scores.
        self.level_signals: Mapping[str, float] = NO_SIGNALS
        self.session: SessionContext | None = None  # the session stage's findings (scrapeshield.session)
        self._fingerprint: ClientFingerprint | None = None
        # (registry, verified bot name or None), once a good-bot registry was asked (fingerprint.policy)
        self.good_bot: tuple[object, str | None] | None = None
        self._kind: tuple[bool, bool] | None = None
        self._path_ids: list[tuple[str, int]] | None = None
        self._keys: dict[KeyFunc, str] | None = None

    @property
    def fingerprint(self) -> ClientFingerprint:
        """The client's TLS/HTTP/User-Agent fingerprint (a function of the facts), computed once."""
        fp = self._fingerprint
        if fp is None:
            f = self.facts
            fp = self._fingerprint = fingerprint_fields(f.headers, f.header_map, http_version=f.http_version,
                                                        alpn=f.alpn, is_tls=f.is_tls, tls=f.tls)
        return fp

    @property
    def asset_request(self) -> bool:
        """A sub-resource (CSS/JS/image/font/media): `detectors.classify.request_kind` of the facts, computed once."""
        return (self._kind or self._classify())[0]

    @property
    def document_request(self) -> bool:
        """A page navigation: `detectors.classify.request_kind` of the facts, computed once."""
        return (self._kind or self._classify())[1]

    def _classify(self) -> tuple[bool, bool]:
        f = self.facts
        kind = self._kind = request_kind(f.method, f.path, f.header_map)
        return kind

    @property
    def path_ids(self) -> list[tuple[str, int]]:
        """The (series, id) pairs of the request's path and query (`detectors.sequence.extract_ids`),
        computed once: the session stage and the detectors both read them. Do not change the list."""
        ids = self._path_ids
        if ids is None:
            f = self.facts
            ids = self._path_ids = extract_ids(f.path, f.query)
        return ids

    def key(self, spec: KeySpec) -> str:
        """The value of a client key for this request, computed once per decision: rules, scores,
        the detectors and the penalty box ask for the same few keys. A key reads the facts and the
        session, which the session stage sets before anything asks for a key."""
        keys = self._keys
        if keys is None:
            keys = self._keys = {}
        func = spec.func
        value = keys.get(func)
        if value is None:
            value = keys[func] = func(self)
        return value

    def fork(self) -> DecisionContext:
        """A fresh context for another engine deciding the same request (a shadow policy): it shares
        what depends on the facts alone, none of what this decision's stages filled in."""
        other = DecisionContext(self.facts, self.now)
        other._fingerprint = self._fingerprint
        other._kind, other._path_ids = self._kind, self._path_ids
        return other

    def __repr__(self) -> str:
        return f"<DecisionContext {self.facts!r} detector_key={self.detector_key!r}>"
