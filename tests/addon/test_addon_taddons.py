"""ShieldAddon inside mitmproxy's test harness: flows in, decisions applied to them, nothing raised."""
from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mitmproxy import exceptions, http
from mitmproxy.flow import Error
from mitmproxy.test import taddons, tflow

from scrapeshield.clock import FakeClock
from scrapeshield.mitm import addon as addon_module
from scrapeshield.mitm.addon import ShieldAddon
from scrapeshield.runtime import RuntimeConfig, ShieldRuntime
from scrapeshield.runtime import shield as runtime_module

PEER = "203.0.113.7"
PROXY = "10.0.0.1"  # a trusted proxy in POLICY

POLICY = """
    version: 1
    fail: {fail}
    trusted_proxies: [10.0.0.0/8]
    rules:
      - {{name: deny, match: {{path: /admin/*}}, action: block}}
      - {{name: gone, match: {{path: /drop}}, action: drop}}
      - {{name: banned-net, match: {{client_ip: 192.0.2.0/24}}, action: block}}
      - {{name: slow, match: {{path: /slow}}, limits: "1/m burst 0", exceed: delay, delay_max: 3s}}
      - {{name: per-ip, match: {{path: /user/*}}, limits: "1/s burst 1"}}
"""

Factory = Callable[..., ShieldRuntime]


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Factory]:
    """A real ShieldRuntime on a temporary policy, with a fake clock and no admin server."""
    made: list[ShieldRuntime] = []

    def make(policy: str = POLICY, fail: str = "open") -> ShieldRuntime:
        path = tmp_path / f"policy{len(made)}.yaml"
        path.write_text(textwrap.dedent(policy.format(fail=fail)))
        config = RuntimeConfig(policy_path=str(path), admin="", decision_log=str(tmp_path / "decisions.jsonl"),
                               reload_interval=0)
        rt = ShieldRuntime(config, clock=FakeClock())
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.decision_log.close()


def flow(path: str = "/", *, peer: str = PEER, headers: list[tuple[bytes, bytes]] | None = None) -> http.HTTPFlow:
    f = tflow.tflow()
    f.client_conn.peername = (peer, 40000)
    f.request.path = path
    f.request.headers = http.Headers(headers if headers is not None else [(b"Host", b"shop.example")])
    return f


def errors_counted(rt: ShieldRuntime, kind: str) -> float:
    return rt.metrics.registry.get_sample_value("scrapeshield_errors_total", {"kind": kind}) or 0.0


async def run(rt: ShieldRuntime, *flows: http.HTTPFlow) -> ShieldAddon:
    addon = ShieldAddon(rt)
    with taddons.context(addon):
        for f in flows:
            await addon.requestheaders(f)
    return addon


# -- decisions applied to flows -------------------------------------------------------------------

async def test_an_allowed_flow_passes_with_the_peer_in_x_forwarded_for(make_runtime: Factory) -> None:
    f = flow("/shop")
    await run(make_runtime(), f)
    assert f.response is None and f.error is None
    assert f.request.headers["X-Forwarded-For"] == PEER
    assert f.metadata["scrapeshield"] == {"rule": "default", "action": "allow", "enforced": True,
                                          "reason": "no rule matched"}


async def test_an_existing_x_forwarded_for_is_kept_and_the_peer_appended(make_runtime: Factory) -> None:
    f = flow("/shop", headers=[(b"Host", b"shop.example"), (b"X-Forwarded-For", b"198.51.100.1"),
                               (b"X-Forwarded-For", b"198.51.100.2")])
    await run(make_runtime(), f)
    assert f.request.headers.get_all("X-Forwarded-For") == [f"198.51.100.1, 198.51.100.2, {PEER}"]


async def test_a_blocked_flow_gets_a_403_with_shield_action_block(make_runtime: Factory) -> None:
    f = flow("/admin/users")
    await run(make_runtime(), f)
    assert f.response is not None
    assert f.response.status_code == 403
    assert f.response.headers["Shield-Action"] == "block"
    assert "X-Forwarded-For" not in f.request.headers


async def test_a_blocked_flow_that_accepts_json_gets_json(make_runtime: Factory) -> None:
    f = flow("/admin/users", headers=[(b"Host", b"shop.example"), (b"Accept", b"application/json")])
    await run(make_runtime(), f)
    assert f.response is not None and f.response.headers["Content-Type"] == "application/json"


async def test_a_throttled_flow_gets_a_429_with_retry_after_and_ratelimit_headers(make_runtime: Factory) -> None:
    flows = [flow("/user/1") for _ in range(3)]
    await run(make_runtime(), *flows)
    assert [f.response.status_code if f.response else None for f in flows] == [None, None, 429]
    resp = flows[2].response
    assert resp is not None
    assert resp.headers["Shield-Action"] == "throttle"
    assert resp.headers["Retry-After"] == "1"
    assert resp.headers["RateLimit-Policy"] == '"per-ip/0";q=1;w=1;burst=1'
    assert resp.headers["RateLimit"] == '"per-ip/0";r=0;t=2'


async def test_a_dropped_flow_is_killed(make_runtime: Factory) -> None:
    f = flow("/drop")
    await run(make_runtime(), f)
    assert f.error is not None and f.error.msg == Error.KILLED_MESSAGE
    assert not f.live and f.response is None


async def test_a_delayed_flow_is_held_for_the_delay_then_passed(make_runtime: Factory,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(addon_module.asyncio, "sleep", fake_sleep)
    first, second = flow("/slow"), flow("/slow")
    await run(make_runtime(), first, second)
    assert slept == [3.0]  # retry after 60 s, capped by delay_max
    assert second.response is None and second.request.headers["X-Forwarded-For"] == PEER


async def test_monitor_mode_lets_a_blocked_flow_through_and_counts_it(make_runtime: Factory) -> None:
    rt = make_runtime(POLICY.replace("version: 1", "version: 1\n    monitor: true"))
    f = flow("/admin/users")
    await run(rt, f)
    assert f.response is None
    assert f.metadata["scrapeshield"]["enforced"] is False
    assert rt.metrics.registry.get_sample_value(
        "scrapeshield_decisions_total", {"rule": "deny", "action": "block", "enforced": "false"}) == 1


@pytest.mark.parametrize("state", ["response", "error", "not live"])
async def test_a_flow_that_is_already_answered_failed_or_dead_is_left_alone(make_runtime: Factory, state: str) -> None:
    # given a flow to a blocked path that is already done with
    f = flow("/admin/users")
    if state == "response":
        f.response = http.Response.make(200, b"cached")
    elif state == "error":
        f.error = Error("connection reset")
    else:
        f.live = False
    before = f.copy()
    rt = make_runtime()
    # when the addon sees it
    await run(rt, f)
    # then nothing about it changes and nothing is decided
    assert f.request.headers == before.request.headers
    assert (f.response.status_code if f.response else None) == (200 if state == "response" else None)
    assert "scrapeshield" not in f.metadata
    assert rt.metrics.registry.get_sample_value("scrapeshield_evaluation_seconds_count") == 0


# -- hostile input --------------------------------------------------------------------------------

async def test_header_bytes_that_are_not_utf8_never_raise(make_runtime: Factory) -> None:
    rt = make_runtime("""
        version: 1
        rules:
          - {{name: bad-ua, match: {{user_agent: 'caf.'}}, action: block}}
          - {{name: keyed, key: 'header:x-k', limits: 100/s}}
    """)
    f = flow("/", headers=[(b"Host", b"\xff\xfe.example"), (b"User-Agent", b"caf\xe9"), (b"X-K", b"\x80\x81\xff"),
                           (b"\xc3(", b"\xc3(")])
    await run(rt, f)
    assert f.response is not None and f.response.status_code == 403  # latin-1: the UA still matched


async def test_a_huge_header_value_never_raises(make_runtime: Factory) -> None:
    rt = make_runtime("""
        version: 1
        rules:
          - {{name: keyed, key: 'header:x-k+cookie:sid', limits: 100/s}}
          - {{name: ua, match: {{user_agent: 'bot$'}}, action: block}}
    """)
    big = b"a" * 1_000_000
    f = flow("/", headers=[(b"Host", b"shop.example"), (b"X-K", big), (b"Cookie", b"sid=" + big),
                           (b"User-Agent", big)])
    await run(rt, f)
    assert f.response is None and f.error is None


async def test_a_request_without_host_is_decided_normally(make_runtime: Factory) -> None:
    rt = make_runtime("""
        version: 1
        rules:
          - {{name: named-host, match: {{host: '*.example'}}, action: allow}}
          - {{name: by-host, key: host, limits: "1/s burst 0"}}
    """)
    flows = [flow("/", headers=[]), flow("/", headers=[])]
    await run(rt, *flows)
    assert flows[0].response is None
    assert flows[1].response is not None and flows[1].response.status_code == 429


@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_a_stuffed_forwarding_chain_from_a_trusted_proxy_is_decided_by_the_rules(
    make_runtime: Factory, fail: str
) -> None:
    # given a trusted proxy that forwards 100 client-written hops, then the client address it saw
    rt = make_runtime(fail=fail)
    chain = (", ".join(f"198.51.100.{i % 250}" for i in range(100)) + ", 192.0.2.9").encode()
    f = flow("/shop", peer=PROXY, headers=[(b"Host", b"shop.example"), (b"X-Forwarded-For", chain)])
    # when the addon sees it
    await run(rt, f)
    # then the client is the address the proxy appended, the `banned-net` rule blocks it whatever the
    # fail mode, and nothing counts as an error
    assert f.response is not None and f.response.status_code == 403
    assert f.metadata["scrapeshield"]["rule"] == "banned-net"
    assert errors_counted(rt, "request") == 0


async def test_spoofed_forwarded_from_an_untrusted_peer_is_ignored(make_runtime: Factory) -> None:
    # given a policy that blocks 192.0.2.0/24, and an untrusted peer claiming to be from there
    rt = make_runtime()
    spoofed = flow("/shop", peer=PEER, headers=[(b"Host", b"shop.example"), (b"Forwarded", b"for=192.0.2.1"),
                                                 (b"X-Forwarded-For", b"192.0.2.1")])
    # when both it and the same claim via a trusted proxy arrive
    relayed = flow("/shop", peer=PROXY, headers=[(b"Host", b"shop.example"), (b"Forwarded", b"for=192.0.2.1")])
    await run(rt, spoofed, relayed)
    # then only the trusted proxy is believed
    assert spoofed.response is None
    assert relayed.response is not None and relayed.response.status_code == 403


async def test_the_resolved_client_behind_a_trusted_proxy_is_who_gets_limited(make_runtime: Factory) -> None:
    rt = make_runtime()
    flows = [flow("/user/1", peer=PROXY, headers=[(b"Host", b"shop.example"), (b"X-Forwarded-For", xff)])
             for xff in (b"198.51.100.1", b"198.51.100.1", b"198.51.100.1", b"198.51.100.2")]
    await run(rt, *flows)
    assert [f.response.status_code if f.response else None for f in flows] == [None, None, 429, None]


# -- options --------------------------------------------------------------------------------------

@pytest.fixture
def forget_runtimes() -> Iterator[None]:
    """Runtimes built from options live in a module registry; drop the ones a test made."""
    before = set(runtime_module._RUNTIMES)
    yield
    for config in set(runtime_module._RUNTIMES) - before:
        runtime_module._RUNTIMES.pop(config).decision_log.close()


def test_options_load_the_policy_into_a_runtime(tmp_path: Path, forget_runtimes: None) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nname: from-options\n")
    addon = ShieldAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, scrapeshield_policy=str(policy), scrapeshield_admin="",
                       scrapeshield_decision_log=str(tmp_path / "d.jsonl"), scrapeshield_reload_interval=0)
        assert addon.runtime is not None
        assert addon.runtime.policy.name == "from-options"
        assert addon.runtime.config.admin == "" and addon.runtime.config.reload_interval == 0


def test_an_invalid_policy_option_raises_an_options_error_naming_file_line_col(tmp_path: Path,
                                                                              forget_runtimes: None) -> None:
    policy = tmp_path / "bad.yaml"
    policy.write_text("version: 1\nmonitor: perhaps\n")
    addon = ShieldAddon()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError) as exc:
        tctx.configure(addon, scrapeshield_policy=str(policy), scrapeshield_admin="")
    assert f"{policy}:2:10: monitor must be true or false" in str(exc.value)
    assert addon.runtime is None


def test_the_policy_option_takes_builtin_names_as_run_does(tmp_path: Path, forget_runtimes: None) -> None:
    addon = ShieldAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, scrapeshield_policy="builtin:starter", scrapeshield_admin="",
                       scrapeshield_decision_log=str(tmp_path / "d.jsonl"), scrapeshield_reload_interval=0)
        assert addon.runtime is not None
        assert addon.runtime.config.policy_path.endswith("starter.yaml")


def test_an_unknown_builtin_policy_option_is_an_options_error_listing_the_names(forget_runtimes: None) -> None:
    unknown = ShieldAddon()
    with taddons.context(unknown) as tctx, pytest.raises(exceptions.OptionsError) as exc:
        tctx.configure(unknown, scrapeshield_policy="builtin:nope", scrapeshield_admin="")
    assert unknown.runtime is None
    assert "no built-in policy 'nope'" in str(exc.value) and "starter" in str(exc.value)


def test_without_a_policy_option_the_addon_passes_everything(forget_runtimes: None) -> None:
    addon = ShieldAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, scrapeshield_admin="")
    assert addon.runtime is None


async def test_an_addon_without_a_runtime_leaves_flows_alone() -> None:
    addon = ShieldAddon()
    f = flow("/admin/users")
    with taddons.context(addon):
        await addon.requestheaders(f)
    assert f.response is None and "X-Forwarded-For" not in f.request.headers
