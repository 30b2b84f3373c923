"""Requests taken out of recorded flows: plain values replay decides, free of mitmproxy."""
from __future__ import annotations

from dataclasses import dataclass

from ..facts import RequestFacts


class ReplayInputError(Exception):
    """A flow file that cannot be read; the message names the file."""


@dataclass(frozen=True, slots=True)
class CutOff:
    """A flow file cut off while it was written: what came before the cut was replayed."""

    path: str
    flows_read: int  # complete flows before the cut (HTTP or not)
    why: str  # what the reader said at the cut

    def where(self) -> str:
        return f"{self.path}: cut off after {self.flows_read} flows ({self.why})"

    def describe(self) -> str:
        return f"{self.where()}; the flows before the cut were replayed"

    def to_dict(self) -> dict[str, object]:
        return {"file": self.path, "flows_read": self.flows_read, "error": self.why}


@dataclass(frozen=True, slots=True)
class RecordedResponse:
    status: int
    content_type: str
    body: bytes | None  # decoded; None when not kept (nothing would read it) or not recorded
    from_shield: bool  # the live shield answered (refusal), so the origin never saw the request


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request taken out of its flow, so the flow itself need not stay in memory."""

    sort_key: tuple[float, int, int]
    facts: RequestFacts
    response: RecordedResponse | None
    source: str
    flow_id: str
    malformed: str | None = None  # why no facts could be built: decided as the live addon does
