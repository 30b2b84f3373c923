"""Request ids: one per request, in the decision log and sent upstream as `X-Request-Id`, so an
operator can join a decision to the origin's own access log line.

An incoming `X-Request-Id` is kept only when the peer is a trusted proxy (which set it): from
anyone else it is client input, and a client could use it to make its requests look like another's
in the logs.
"""
from __future__ import annotations

import os
import re

HEADER = "X-Request-Id"
_VALID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def new_request_id() -> str:
    return os.urandom(12).hex()


def request_id(incoming: str | None, from_trusted_proxy: bool) -> str:
    """The id for a request: the trusted proxy's, if it sent a sane one, else a new one."""
    if incoming and from_trusted_proxy and _VALID.fullmatch(incoming):
        return incoming
    return new_request_id()
