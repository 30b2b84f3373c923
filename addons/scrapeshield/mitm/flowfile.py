"""mitmproxy flow files -> recorded requests for replay (`mitmdump -w`, `scrapeshield run --save`).

Reading flow files is mitmproxy's business, so it lives here; replay itself sees only
`RecordedRequest` values.
"""
from __future__ import annotations

import dataclasses
import gzip
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, cast

from mitmproxy import http
from mitmproxy.exceptions import FlowReadException
from mitmproxy.io import FlowReader

from ..decision import ANSWERED
from ..facts import RequestFacts
from ..fingerprint.front import CLOUDFRONT_HEADERS, FINGERPRINT_HEADERS
from ..policy.model import CompiledPolicy
from ..replay.recorded import CutOff, RecordedRequest, RecordedResponse, ReplayInputError
from .flowfacts import facts_from_flow
from .metadata import DECISION_METADATA, RID_METADATA, TLS_METADATA, XFF_METADATA


def _open_flow_file(path: str) -> BinaryIO:
    with open(path, "rb") as probe:
        packed = probe.read(2) == b"\x1f\x8b"  # gzip magic: `gzip capture.flows` keeps working
    return cast(BinaryIO, gzip.open(path, "rb") if packed else open(path, "rb"))  # the caller closes it


def iter_http_flows(path: str, cut: list[CutOff] | None = None) -> Iterator[http.HTTPFlow]:
    """The HTTP flows of one file in file order; TCP/UDP/DNS flows are skipped.

    A file that stops making sense after its first flow was cut off while it was written (a
    `--save` whose process was killed, a copy of a file still growing): with a `cut` list, the
    flows before the cut are yielded and the cut is appended to it; without one, it is an error,
    as is a file whose first flow cannot be read."""
    read = 0
    try:
        with _open_flow_file(path) as fh:
            for flow in FlowReader(fh).stream():
                read += 1
                if isinstance(flow, http.HTTPFlow):
                    yield flow
    except (OSError, EOFError, zlib.error, FlowReadException) as exc:  # gzip.BadGzipFile is an OSError
        why = getattr(exc, "strerror", None) or str(exc)
        if read and cut is not None:
            cut.append(CutOff(path, read, why))
            return
        if isinstance(exc, FlowReadException):
            raise ReplayInputError(f"{path}: not a mitmproxy flow file: {why}") from None
        raise ReplayInputError(f"{path}: cannot read: {why}") from None


def tls_from_metadata(flow: http.HTTPFlow) -> Any:
    """The TLS fingerprint the live addon saved with the flow, or None."""
    saved = flow.metadata.get(TLS_METADATA)
    if not isinstance(saved, dict):
        return None
    try:
        from ..fingerprint.tls import TlsFingerprint
    except ImportError:
        return None
    names = {f.name for f in dataclasses.fields(TlsFingerprint)}
    # Flow files store tuples as lists; the fingerprint wants its tuples back.
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in names}
    try:
        return TlsFingerprint(**values)
    except TypeError:  # saved by another version with other fields
        return None


def as_sent(flow: http.HTTPFlow) -> http.HTTPFlow:
    """Undo the X-Forwarded-For hop and the X-Request-Id the live shield added before the flow was saved, so the
    policy sees the headers the client sent (their order and count matter to fingerprints)."""
    prior = flow.metadata.get(XFF_METADATA)
    if isinstance(prior, list):
        if prior:
            flow.request.headers.set_all("X-Forwarded-For", [str(v) for v in prior])
        else:
            flow.request.headers.pop("X-Forwarded-For", None)
    prior_id = flow.metadata.get(RID_METADATA)
    if isinstance(prior_id, list):
        if prior_id:
            flow.request.headers.set_all("X-Request-Id", [str(v) for v in prior_id])
        else:
            flow.request.headers.pop("X-Request-Id", None)
    return flow


def _recorded_response(flow: http.HTTPFlow, keep_body: bool) -> RecordedResponse | None:
    response = flow.response
    if response is None:
        return None
    live = flow.metadata.get(DECISION_METADATA)
    from_shield = isinstance(live, dict) and bool(live.get("enforced")) and live.get("action") in ANSWERED
    body = response.get_content(strict=False) if keep_body and not from_shield else None
    return RecordedResponse(response.status_code, response.headers.get("content-type", ""), body, from_shield)


def read_requests(paths: Sequence[str], policy: CompiledPolicy, keep_bodies: bool = False,
                  cut: list[CutOff] | None = None) -> list[RecordedRequest]:
    """Every HTTP request of every file, in replay order (with `cut`, what a cut-off file holds
    before its cut; see `iter_http_flows`)."""
    out: list[RecordedRequest] = []
    for file_index, path in enumerate(paths):
        for position, flow in enumerate(iter_http_flows(path, cut)):
            malformed = None
            try:
                facts = facts_from_flow(as_sent(flow), policy.trusted_proxies, tls_from_metadata(flow),
                                        policy.section(FINGERPRINT_HEADERS) or CLOUDFRONT_HEADERS)
            except Exception as exc:
                peer = flow.client_conn.peername[0] if flow.client_conn.peername else "0.0.0.0"
                facts = RequestFacts(peer_ip=peer, method=flow.request.method, path=flow.request.path[:512],
                                     timestamp=flow.request.timestamp_start)
                malformed = f"malformed request: {exc}"
            out.append(RecordedRequest((flow.request.timestamp_start, file_index, position), facts,
                                 _recorded_response(flow, keep_bodies), path, flow.id, malformed))
    out.sort(key=lambda r: r.sort_key)
    return out
