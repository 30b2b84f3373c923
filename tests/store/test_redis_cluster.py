"""The store on a real Redis Cluster (3 masters from redis-server, `redis-cli --cluster create`):
a request is one round trip on one slot; a slot moved to another master mid-test (ASK, then
MOVED) keeps the state and raises nothing; a failed master follows the fail mode and the store
recovers when it returns, without a new store; malformed cluster URLs are refused in one line.
Each fault test has its own cluster (the conformance suite runs on the shared one)."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from redis_server import RedisClusterServers, start_cluster_or_fail
from scrapeshield.gcra import parse_rate
from scrapeshield.store import open_store
from scrapeshield.store.base import Batch, BucketCheck, ScoreUpdate, StoreError
from scrapeshield.store.memory import MemoryStore
from scrapeshield.store.redis import RedisStore, parse_cluster_url
from scrapeshield.store.resilient import ResilientStore

NOW = 1_700_000_000.0
KEY = "ip:203.0.113.7"
LIMIT = parse_rate("1/m burst 4")
BATCH = Batch(ban_keys=(KEY, "subnet:203.0.113.0/24"),
              buckets=(BucketCheck("ip-rule", KEY, LIMIT), BucketCheck("net-rule", "subnet:203.0.113.0/24", LIMIT)),
              scores=(ScoreUpdate("abuse", KEY, 1.0, 60.0),))


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    servers = start_cluster_or_fail(workdir=tmp_path_factory.mktemp("cluster"))
    yield servers
    servers.close()


@pytest.fixture
async def store(cluster: RedisClusterServers) -> AsyncIterator[RedisStore]:
    s = RedisStore.from_cluster_url(cluster.url, timeout=0.5, expiry_slack=600, local_cache_max=0)
    await s.connect()
    yield s
    await s.close()


def accepted(results: list[object]) -> int:
    return sum(r.refused < 0 for r in results)  # type: ignore[attr-defined]


async def test_a_request_is_one_round_trip_on_one_slot(store: RedisStore) -> None:
    trips = store.round_trips
    await store.apply(BATCH, NOW)
    assert store.round_trips == trips + 1
    assert store._prefix == "{ss}:"  # every key carries this hash tag


async def test_a_slot_moved_to_another_master_keeps_its_state(cluster: RedisClusterServers, store: RedisStore) -> None:
    # given a bucket with 3 of its 5 requests spent, on the slot of the store's hash tag
    first = [await store.apply(BATCH, NOW) for _ in range(3)]
    slot = key_slot(b"{ss}")
    source = cluster.owner(slot)
    target = next(n for n in cluster.nodes[:cluster.masters] if n is not source)
    # when the slot is resharded to another master (ASK during, MOVED after)
    cluster.move_slot(slot, target)
    assert cluster.owner(slot) is target
    # then the store follows without an error, and the bucket still has exactly 2 left
    after = [await store.apply(BATCH, NOW) for _ in range(4)]
    assert (accepted(first), accepted(after)) == (3, 2)


async def test_a_failed_master_follows_the_fail_mode_and_recovers_without_a_restart(
        cluster: RedisClusterServers, store: RedisStore, caplog: pytest.LogCaptureFixture) -> None:
    # given a fail-closed shield state on the cluster
    shield = ResilientStore(store, MemoryStore(), "closed", logging.getLogger("test.cluster"))
    assert (await shield.apply(BATCH, NOW)).refused == -1
    # when the master serving its slot dies (no replica to take over)
    owner = cluster.owner(key_slot(b"{ss}"))
    owner.kill()
    # then requests are refused (fail: closed) and an outage is declared, logged once
    for i in range(4):
        with pytest.raises(StoreError):
            await shield.apply(BATCH, NOW + 0.1 * i)
    assert shield.degraded
    # when the master comes back on its port (with its nodes.conf)
    owner.start()
    cluster.wait_ok()
    # then a probe finds it and the same store serves again, with the state from before
    for i in range(50):
        try:
            result = await shield.apply(BATCH, NOW + 2 + i)
            break
        except StoreError:
            continue
    assert not shield.degraded and result.refused == -1
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1


@pytest.mark.parametrize(("url", "says"), [
    ("redis+cluster://", "'(empty)' is not host:port"),
    ("redis+cluster://127.0.0.1", "'127.0.0.1' is not host:port"),
    ("redis+cluster://127.0.0.1:7000,127.0.0.1:x", "'127.0.0.1:x' is not host:port"),
    ("redis+cluster://:secret@127.0.0.1:7000,:99999", "':99999' is not host:port"),
])
def test_malformed_cluster_urls_are_refused_in_one_line(url: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        open_store(url)
    message = str(info.value)
    assert says in message and "\n" not in message and "secret" not in message


def test_a_cluster_url_gives_nodes_and_credentials() -> None:
    assert parse_cluster_url("redis+cluster://u:p%40ss@10.0.0.1:7000,[::1]:7001") == (
        [("10.0.0.1", 7000), ("::1", 7001)], "u", "p@ss")


async def test_a_sentinel_url_finds_the_primary_and_serves(tmp_path_factory: pytest.TempPathFactory) -> None:
    from redis_server import SentinelServer, start_or_fail

    primary = start_or_fail(workdir=tmp_path_factory.mktemp("primary"))
    sentinel = SentinelServer(primary, tmp_path_factory.mktemp("sentinel")).start()
    try:
        store = open_store(sentinel.url, timeout=1.0)
        assert isinstance(store, RedisStore) and store.name == "redis-sentinel"
        await store.connect()
        results = [await store.apply(Batch(buckets=(BucketCheck("r", KEY, LIMIT),)), NOW) for _ in range(7)]
        assert accepted(results) == 5
        await store.close()
    finally:
        sentinel.close()
        primary.close()


def test_malformed_sentinel_urls_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="service"):
        open_store("redis+sentinel://127.0.0.1:26379")


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files (cryptography, which mitmproxy uses)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_a_rediss_url_speaks_tls_to_a_real_tls_redis(tmp_path: Path) -> None:
    from redis_server import _free_port, start_or_fail

    cert, key = self_signed(tmp_path)
    tls_port = _free_port()
    server = start_or_fail(workdir=tmp_path / "redis", extra_args=(
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"))
    try:
        store = open_store(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}", timeout=2.0)
        await store.connect()
        results = [await store.apply(Batch(buckets=(BucketCheck("r", KEY, LIMIT),)), NOW) for _ in range(7)]
        assert accepted(results) == 5
        await store.close()
    finally:
        server.close()
