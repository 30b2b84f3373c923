"""`mitm/bodyprefix.decoded_prefix` against mitmproxy's own decoding, and the response hook that
feeds a compressed page's references to the detectors."""
from __future__ import annotations

import random
import textwrap
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import http
from mitmproxy.addons import save
from mitmproxy.net import encoding
from mitmproxy.test import taddons, tflow

from scrapeshield.clock import FakeClock
from scrapeshield.mitm import addon as addon_module
from scrapeshield.mitm.addon import ShieldAddon
from scrapeshield.mitm.bodyprefix import decoded_prefix
from scrapeshield.runtime import RuntimeConfig, ShieldRuntime

CODINGS = ("identity", "gzip", "deflate", "br", "zstd")
PAGE = (b"<!doctype html><html><head><link rel=stylesheet href=/static/site.css>"
        b"<script src=/static/app.js></script></head><body>" + b"<p>record</p>" * 20_000 + b"</body></html>")


def response_with(raw: bytes, coding: str) -> http.Response:
    """A response carrying `raw` as sent (`make` would encode a body it is given)."""
    response = http.Response.make(200, b"", {"content-type": "text/html", "content-encoding": coding})
    response.raw_content = raw
    return response


def what_mitmproxy_reads(raw: bytes, coding: str, limit: int) -> bytes:
    content = response_with(raw, coding).get_content(strict=False)
    assert content is not None
    return content[:limit]


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=4096) | st.text(max_size=3000).map(str.encode),
       coding=st.sampled_from(CODINGS), limit=st.integers(1, 5000))
def test_a_body_that_decodes_reads_as_mitmproxy_reads_it(body: bytes, coding: str, limit: int) -> None:
    raw = encoding.encode(body, coding)
    assert decoded_prefix(raw, coding, limit) == what_mitmproxy_reads(raw, coding, limit) == body[:limit]


@pytest.mark.parametrize("coding", CODINGS)
def test_a_large_page_is_decoded_only_as_far_as_the_limit(coding: str) -> None:
    raw = encoding.encode(PAGE, coding)
    assert len(PAGE) > 250_000
    assert decoded_prefix(raw, coding, 65_536) == PAGE[:65_536]


def test_codings_are_read_as_http_spells_them() -> None:
    raw = encoding.encode(PAGE, "gzip")
    assert decoded_prefix(raw, " GZIP ", 100) == PAGE[:100]
    # RFC 9110 8.4.1.3: x-gzip is gzip (mitmproxy does not know the alias and hands over the raw bytes).
    assert decoded_prefix(raw, "x-gzip", 100) == PAGE[:100]
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    bare = raw_deflate.compress(PAGE) + raw_deflate.flush()  # DEFLATE without the zlib wrapper
    assert decoded_prefix(bare, "deflate", 100) == PAGE[:100] == what_mitmproxy_reads(bare, "deflate", 100)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd", "gzip, br", "compress", "no-such-coding"])
def test_what_does_not_decode_is_read_raw_as_mitmproxy_reads_it(coding: str) -> None:
    garbage = b"\x1f\x8b not really compressed <link rel=stylesheet href=/x.css>" * 10
    assert decoded_prefix(garbage, coding, 64) == garbage[:64] == what_mitmproxy_reads(garbage, coding, 64)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_a_cut_body_gives_the_prefix_it_holds(coding: str) -> None:
    """A body cut short (the origin died mid-page): mitmproxy's whole-body decode fails and hands
    over the compressed bytes; here what did arrive decodes to a prefix of the page (zstd gives
    whole blocks only, so possibly none of it)."""
    page = PAGE[:200] + random.Random(7).randbytes(60_000).hex().encode()  # compresses ~2:1
    raw = encoding.encode(page, coding)
    prefix = decoded_prefix(raw[: len(raw) // 2], coding, 1000)
    assert page.startswith(prefix)
    if coding != "zstd":
        assert prefix == page[:1000]


def test_an_empty_body_and_no_coding() -> None:
    assert decoded_prefix(b"", "gzip", 10) == b""
    assert decoded_prefix(b"<html>", None, 10) == b"<html>"
    assert decoded_prefix(b"<html>", "", 3) == b"<ht"


# -- the response hook ----------------------------------------------------------------------------

DETECTORS_POLICY = """
    version: 1
    detectors: {key: ip}
    rules: []
"""


def runtime(tmp_path: Path, policy: str) -> ShieldRuntime:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(policy))
    return ShieldRuntime(RuntimeConfig(policy_path=str(path), admin="", decision_log=str(tmp_path / "d.jsonl"),
                                       reload_interval=0), clock=FakeClock())


def page_request(peer: str = "203.0.113.7") -> http.HTTPFlow:
    f = tflow.tflow()
    f.client_conn.peername = (peer, 40000)
    f.request.path = "/products/1"
    f.request.headers = http.Headers([(b"Host", b"shop.example"), (b"Accept", b"text/html")])
    return f


async def serve_page(rt: ShieldRuntime, raw: bytes, coding: str) -> None:
    addon = ShieldAddon(rt)
    f = page_request()
    with taddons.context(addon):
        await addon.requestheaders(f)
        assert f.response is None
        f.response = response_with(raw, coding)
        addon.response(f)


@pytest.mark.parametrize("coding", CODINGS)
async def test_a_compressed_page_feeds_its_references_to_the_detectors(tmp_path: Path, coding: str) -> None:
    rt = runtime(tmp_path, DETECTORS_POLICY)
    try:
        await serve_page(rt, encoding.encode(PAGE, coding), coding)
        state = rt.engine.detectors.describe("ip=203.0.113.7") if rt.engine.detectors else None
        assert state is not None
        assert (state["html_pages"], state["pending_pages"]) == (1, 1)  # site.css and app.js are owed
    finally:
        rt.decision_log.close()


async def test_without_an_asset_detector_no_body_is_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = runtime(tmp_path, "version: 1\ndetectors: {key: ip, assets_enabled: false}\nrules: []\n")

    def must_not_decode(raw: bytes, coding: str | None, limit: int) -> bytes:
        raise AssertionError("decoded a body no detector reads")

    monkeypatch.setattr(addon_module, "decoded_prefix", must_not_decode)
    try:
        assert rt.html_scan_bytes() == 0
        await serve_page(rt, encoding.encode(PAGE, "gzip"), "gzip")
        assert rt.metrics.registry.get_sample_value("scrapeshield_errors_total", {"kind": "response"}) is None
    finally:
        rt.decision_log.close()


# -- streamed responses ---------------------------------------------------------------------------

SESSION_POLICY = """
    version: 1
    session: {ttl: 1d}
    detectors: {key: ip}
    rules: []
"""


def test_a_body_tap_passes_every_chunk_on_and_keeps_the_first_bytes() -> None:
    tap = addon_module.BodyTap(10)
    chunks = [b"<html>", b"<head>", b"<body>", b""]
    assert [tap(c) for c in chunks] == chunks
    assert tap.prefix() == b"<html><hea"


@pytest.fixture
def session_runtime(tmp_path: Path) -> Iterator[ShieldRuntime]:
    rt = runtime(tmp_path, SESSION_POLICY)
    yield rt
    rt.decision_log.close()


async def test_a_streamed_response_gets_its_cookie_with_its_headers_once_and_its_start_observed(
        session_runtime: ShieldRuntime) -> None:
    addon, f = ShieldAddon(session_runtime), page_request()
    with taddons.context(addon):
        await addon.requestheaders(f)
        # mitmproxy decided to stream the upstream's large page (its Content-Length)
        f.response = http.Response.make(200, b"", {"content-type": "text/html"})
        f.response.stream = True
        addon.responseheaders(f)
        assert len(f.response.headers.get_all("set-cookie")) == 1  # sent before the body
        tap = f.response.stream
        assert isinstance(tap, addon_module.BodyTap)
        for start in range(0, len(PAGE), 16384):  # the body as it streams through
            assert tap(PAGE[start:start + 16384]) == PAGE[start:start + 16384]
        f.response.raw_content = None  # a streamed body is not kept
        addon.response(f)
    assert len(f.response.headers.get_all("set-cookie")) == 1  # not added again
    assert not addon._cookie_due
    detectors = session_runtime.engine.detectors
    state = detectors.describe("ip=203.0.113.7") if detectors is not None else None
    assert state is not None and (state["html_pages"], state["pending_pages"]) == (1, 1)


async def test_a_chunked_html_page_is_streamed_from_its_first_byte_and_observed(
        session_runtime: ShieldRuntime) -> None:
    addon, f = ShieldAddon(session_runtime), page_request("203.0.113.10")
    with taddons.context(addon):
        await addon.requestheaders(f)
        f.response = http.Response.make(200, b"", {"content-type": "text/html", "transfer-encoding": "chunked"})
        assert "content-length" not in f.response.headers
        addon.responseheaders(f)
        tap = f.response.stream  # mitmproxy streams it from here: no buffering, no switch midway
        assert isinstance(tap, addon_module.BodyTap)
        assert b"".join(tap(PAGE[start:start + 4096]) for start in range(0, len(PAGE), 4096)) == PAGE
        f.response.raw_content = None
        addon.response(f)
    detectors = session_runtime.engine.detectors
    state = detectors.describe("ip=203.0.113.10") if detectors is not None else None
    assert state is not None and (state["html_pages"], state["pending_pages"]) == (1, 1)


@pytest.mark.parametrize(("status", "headers", "method"), [
    (200, {"content-type": "text/html"}, "GET"),  # a Content-Length: buffered unless above the threshold
    (200, {"content-type": "text/css", "transfer-encoding": "chunked"}, "GET"),  # not a page
    (404, {"content-type": "text/html", "transfer-encoding": "chunked"}, "GET"),  # not read by the detectors
    (200, {"content-type": "text/html", "transfer-encoding": "chunked"}, "HEAD"),  # no body
])
async def test_other_responses_are_left_to_mitmproxy(session_runtime: ShieldRuntime, status: int,
                                                     headers: dict[str, str], method: str) -> None:
    addon, f = ShieldAddon(session_runtime), page_request("203.0.113.11")
    f.request.method = method
    with taddons.context(addon):
        await addon.requestheaders(f)
        f.response = http.Response.make(status, b"" if "transfer-encoding" in headers else b"<html></html>", headers)
        addon.responseheaders(f)
        assert f.response.stream is False


async def test_a_chunked_page_no_detector_reads_stays_buffered(tmp_path: Path) -> None:
    rt = runtime(tmp_path, "version: 1\nsession: {ttl: 1d}\ndetectors: {key: ip, assets_enabled: false}\nrules: []\n")
    addon, f = ShieldAddon(rt), page_request("203.0.113.13")
    try:
        assert rt.html_scan_bytes() == 0
        with taddons.context(addon):
            await addon.requestheaders(f)
            f.response = http.Response.make(200, b"", {"content-type": "text/html", "transfer-encoding": "chunked"})
            addon.responseheaders(f)
            assert f.response.stream is False  # nothing to keep of it: mitmproxy's own choice stands
            assert len(f.response.headers.get_all("set-cookie")) == 1  # the cookie still goes with the headers
    finally:
        rt.decision_log.close()


async def test_while_flows_are_saved_a_chunked_page_stays_buffered_for_replay(
        session_runtime: ShieldRuntime, tmp_path: Path) -> None:
    addon, f = ShieldAddon(session_runtime), page_request("203.0.113.12")
    with taddons.context(addon) as tctx:
        tctx.master.addons.add(save.Save())
        tctx.configure(addon, save_stream_file=str(tmp_path / "flows"))
        await addon.requestheaders(f)
        f.response = http.Response.make(200, b"", {"content-type": "text/html", "transfer-encoding": "chunked"})
        addon.responseheaders(f)
        assert f.response.stream is False  # the saved flow keeps the page (`replay` reads it)
        tctx.configure(addon, save_stream_file=None)
        addon.responseheaders(f)
        assert isinstance(f.response.stream, addon_module.BodyTap)


async def test_a_buffered_response_gets_its_cookie_once(session_runtime: ShieldRuntime) -> None:
    addon, f = ShieldAddon(session_runtime), page_request("203.0.113.8")
    with taddons.context(addon):
        await addon.requestheaders(f)
        f.response = http.Response.make(200, b"<html></html>", {"content-type": "text/html"})
        addon.responseheaders(f)  # the cookie goes with the headers, streamed or not
        assert len(f.response.headers.get_all("set-cookie")) == 1
        addon.response(f)
    assert len(f.response.headers.get_all("set-cookie")) == 1 and not addon._cookie_due


async def test_a_flow_that_fails_before_its_response_is_forgotten(session_runtime: ShieldRuntime) -> None:
    addon, f = ShieldAddon(session_runtime), page_request("203.0.113.9")
    with taddons.context(addon):
        await addon.requestheaders(f)
        assert addon._cookie_due
        addon.error(f)  # the upstream went away before its headers
    assert not addon._cookie_due and not addon._contexts
