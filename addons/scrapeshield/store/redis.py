"""Shared state in Redis or Valkey: one Lua script call per request, the same answers as memory.

`apply` sends a request's whole `Batch` as one EVALSHA of `_APPLY_LUA`, which does what
`MemoryStore.apply_now` does, in the same order and with the same float arithmetic:

1. ban check: the first ban key whose stored deadline is later than `now` ends the script;
   nothing else is applied;
2. GCRA over every bucket, all or nothing (`gcra.conform_all`): the TATs are read with one
   MGET, and only when every bucket conforms are the new TATs written;
3. score updates with exponential decay (`base.decay`), applied whether or not a bucket refused.

Time is the caller's `now` (the engine's injected clock), never Redis TIME, so replay and tests
are deterministic and give the results `MemoryStore` gives. Numbers cross the wire as `repr`
strings and come back as `%.17g` strings, so both sides compute on the very same IEEE doubles:
the script only evaluates `start - now > max_ahead` and `start + interval`, with `max_ahead`
(`gcra.conform`'s threshold) computed in Python by `max_ahead()`. The `BucketState`s are computed
in Python (`gcra.state_after`) from the TATs the script returns, sharing that arithmetic.

Key layout (`key_prefix` defaults to "ss:"; `\\x1f` separates a definition from a client key,
as in memory):

    ss:ban:<key>                   ban deadline (epoch seconds)     PX until the deadline
    ss:b:<bucket_id>\\x1f<key>      TAT                              PX until the TAT has passed
    ss:s:<score_id>\\x1f<key>       "<value> <since>"                PX until decayed below ~0.001
    ss:once:<token_id>             "1" (a spent single-use token)   PX until the token expires
    ss:log:<key>                   detector log (a list, newest     PX its ttl after the last append
                                   `keep` entries)
    ss:logn:<key>                  appends to that log so far       (the same)

Each PX also carries `expiry_slack` (1 s) for clock skew between replicas, so Redis holds
nothing stale for longer than that. On a Redis Cluster (`from_cluster_url`) the prefix is a hash
tag (`{ss}:`), so one request's keys share one slot and its script stays one round trip.

The optional local cache (as in envoy's ratelimit) remembers, per process, which ban keys are
banned and which bucket keys are over their limit, so a client that is already refused is
refused again without a round trip:

- a ban is remembered until its deadline, but is confirmed with Redis at most every
  `local_ban_recheck` seconds, so that an operator's unban (DEL) takes effect soon;
- a bucket that refused is remembered with its TAT. An over-limit TAT cannot move until the
  bucket conforms again (only a conforming request moves it), so that TAT is exact until then,
  and `gcra.conform` on it is the same test the script would run. A batch with score updates
  always goes to Redis, because memory applies scores even to refused requests.

How locally answered refusals compare with memory. Bans: the same answers while one replica
uses the Redis (this process has seen every ban, unless its cache has evicted one). Buckets: the
same decision, refused with nothing consumed, and the same state for the refusing bucket; but if
an earlier bucket of the request has meanwhile gone over its limit through *other* requests,
memory would name that one, and the states of the request's other buckets are reported as idle,
since only Redis knows them. With several replicas, a ban set by another replica is seen here
once the over-limit entry runs out, i.e. when the client would conform again.

Start and faults: `connect()` connects, loads the scripts and opens a few pooled connections
before the proxy accepts clients. At most `max_connections` calls are on the wire at once (one
bounded pool, reused); more wait their turn, and that wait is not Redis' time. Every call on the
wire is bounded by `timeout` (an asyncio deadline; redis-py's own retries are off), and any
failure raises `StoreError` (`StoreTimeout` for a timeout), for `ResilientStore` or the engine's
fail mode to handle.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import hiredis
import redis.asyncio as aioredis
from cachetools import LRUCache
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ClusterDownError, NoScriptError, RedisError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from ..gcra import BucketLimit, conform, state_after
from .base import (
    EMPTY_RESULT,
    Batch,
    BatchResult,
    KeyInspection,
    ListEntry,
    LogAppend,
    LogRead,
    Logs,
    StoreError,
    StoreTimeout,
    decay,
)

_SEP = "\x1f"
_BANNED = -2  # first element of the script's answer when a ban key is banned

# KEYS: per ban key its allow key and its ban key (2 * nb), bucket keys (nk), score keys (ns).
# ARGV: now, nb, nk, ns, slack_ms, then per bucket interval, max_ahead, then per score delta, half_life.
# Answer: {-2, ban index (0-based), deadline, allowed index or -1} or {refused index or -1, allowed
# index or -1, TAT per bucket ('' for none), score value per score}. Numbers go back as %.17g
# strings: a Lua number would come back truncated to an integer, and tostring() keeps 14 digits.
_APPLY_LUA = """
local now = tonumber(ARGV[1])
local nb, nk, ns = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local slack = tonumber(ARGV[5])
local allowed = -1
for i = 1, nb do
  local allow_until = tonumber(redis.call('GET', KEYS[2 * i - 1]))
  if allow_until and allow_until > now then
    if allowed < 0 then allowed = i - 1 end
  else
    local deadline = tonumber(redis.call('GET', KEYS[2 * i]))
    if deadline and deadline > now then
      return {-2, i - 1, string.format('%.17g', deadline), allowed}
    end
  end
end
nb = 2 * nb
local out = {-1, allowed}
if nk > 0 then
  local raw = redis.call('MGET', unpack(KEYS, nb + 1, nb + nk))
  local old, new = {}, {}
  local refused = -1
  for j = 1, nk do
    local tat = tonumber(raw[j])
    old[j] = tat
    if refused < 0 then
      local interval, max_ahead = tonumber(ARGV[4 + 2 * j]), tonumber(ARGV[5 + 2 * j])
      local start = now
      if tat and tat >= now then start = tat end
      if start - now > max_ahead then
        refused = j - 1
      else
        new[j] = start + interval
      end
    end
  end
  out[1] = refused
  for j = 1, nk do
    local tat = old[j]
    if refused < 0 then
      tat = new[j]
      redis.call('SET', KEYS[nb + j], string.format('%.17g', tat),
                 'PX', string.format('%d', math.ceil((tat - now) * 1000) + slack))
    end
    if tat then out[j + 2] = string.format('%.17g', tat) else out[j + 2] = '' end
  end
end
local base = 5 + 2 * nk
for s = 1, ns do
  local key = KEYS[nb + nk + s]
  local delta, half_life = tonumber(ARGV[base + 2 * s - 1]), tonumber(ARGV[base + 2 * s])
  local value, since = 0.0, now
  local raw = redis.call('GET', key)
  if raw then
    local v, t = string.match(raw, '^(%S+) (%S+)$')
    value, since = tonumber(v) or 0.0, tonumber(t) or now
  end
  if value ~= 0 and now > since and half_life > 0 then
    value = value * 0.5 ^ ((now - since) / half_life)
  end
  value = value + delta
  if value < 0 then value = 0.0 end
  local keep = 2592000
  if half_life > 0 then
    local halves = 10
    if value > 1 then halves = halves + math.log(value) / math.log(2) end
    keep = math.min(half_life * halves, keep)
  end
  redis.call('SET', key, string.format('%.17g %.17g', value, now),
             'PX', string.format('%d', math.ceil(keep * 1000) + slack))
  out[#out + 1] = string.format('%.17g', value)
end
return out
"""

# The penalty box and the allow list, each: `<prefix>ban:<key>` (or `allow:`) holds the deadline
# (what the apply script reads), the sorted set `<prefix>bans` (or `allows`) the keys by deadline,
# and the hash `<prefix>bans:meta` "created reason" per key, for listing. Entries past their
# deadline, and beyond `max_entries` the soonest ones, are trimmed by every put.
# KEYS: entry key, sorted set, meta hash. ARGV: deadline, px, key, created, reason, max_entries, now,
# entry key prefix, never_shorten (1/0). Answer: the deadline now in force.
_PUT_LUA = """
local deadline = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]))
if ARGV[9] == '1' and current and current >= deadline then return string.format('%.17g', current) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4] .. ' ' .. ARGV[5])
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[7], 'LIMIT', 0, 100)
for _, member in ipairs(gone) do
  redis.call('ZREM', KEYS[2], member)
  redis.call('HDEL', KEYS[3], member)
end
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
if over > 0 then
  for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
    redis.call('ZREM', KEYS[2], member)
    redis.call('HDEL', KEYS[3], member)
    redis.call('DEL', ARGV[8] .. member)
  end
end
return string.format('%.17g', deadline)
"""

# Detector logs (`append_logs`). KEYS: per log its list and its append counter. ARGV: per log its
# entry, keep, seen, PX. Answer: per log {appended, whole (1/0), entries after `seen` or all}.
_LOG_LUA = """
local out = {}
for i = 1, #KEYS / 2 do
  local key, count = KEYS[2 * i - 1], KEYS[2 * i]
  local px = ARGV[4 * i]
  local n = redis.call('INCR', count)
  redis.call('PEXPIRE', count, px)
  redis.call('RPUSH', key, ARGV[4 * i - 3])
  redis.call('LTRIM', key, -tonumber(ARGV[4 * i - 2]), -1)
  redis.call('PEXPIRE', key, px)
  local seen = tonumber(ARGV[4 * i - 1])
  if seen > 0 and seen < n and n - seen <= redis.call('LLEN', key) then
    out[i] = {n, 0, redis.call('LRANGE', key, seen - n, -1)}
  else
    out[i] = {n, 1, redis.call('LRANGE', key, 0, -1)}
  end
end
return out
"""

# KEYS: entry key, sorted set, meta hash. ARGV: key. Answer: 1 if a live entry was removed.
_REMOVE_LUA = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return redis.call('DEL', KEYS[1])
"""

# KEYS: sorted set, meta hash. ARGV: now, limit. Answer: key, deadline, "created reason" per entry.
_LIST_LUA = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, member in ipairs(gone) do
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
end
local out = {}
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
for i = 1, #live, 2 do
  out[#out + 1] = live[i]
  out[#out + 1] = string.format('%.17g', tonumber(live[i + 1]))
  out[#out + 1] = redis.call('HGET', KEYS[2], live[i]) or ''
end
return out
"""

# KEYS: state keys (bucket TATs, scores), then ban key, ban meta hash, allow key, allow meta hash.
# ARGV: the client key. Answer: each value, '' for none, in KEYS order (the hashes: the key's field).
_INSPECT_LUA = """
local out = {}
local n = #KEYS
for i = 1, n - 4 do out[i] = redis.call('GET', KEYS[i]) or '' end
out[#out + 1] = redis.call('GET', KEYS[n - 3]) or ''
out[#out + 1] = redis.call('HGET', KEYS[n - 2], ARGV[1]) or ''
out[#out + 1] = redis.call('GET', KEYS[n - 1]) or ''
out[#out + 1] = redis.call('HGET', KEYS[n], ARGV[1]) or ''
return out
"""


def redact_url(url: str) -> str:
    """`url` with any password (in the userinfo or a `password=` query item) replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rpartition("@")[2]
        netloc = f"{user}:***@{host}"
    query = parts.query
    if query:
        items = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(items, safe="*/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


CLUSTER_SCHEME = "redis+cluster://"
SENTINEL_SCHEME = "redis+sentinel://"


def parse_cluster_url(url: str, scheme: str = CLUSTER_SCHEME) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """(nodes, username, password) of `redis+cluster://[user:password@]host:port,host:port,...`
    (or the same with `scheme`); ValueError with a one-line reason otherwise."""
    shown = redact_url(url.replace(scheme, "redis://", 1)).replace("redis://", scheme, 1)
    if not url.startswith(scheme):
        raise ValueError(f"store URL {shown!r}: expected {scheme}host:port,host:port,...")
    rest = url[len(scheme):]
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    userinfo, _, hosts = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, sep, secret = userinfo.partition(":")
        username, password = (unquote(user) or None), (unquote(secret) if sep else None)
    nodes = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"store URL {shown!r}: {item.strip() or '(empty)'!r} is not host:port "
                             f"(expected {scheme}host:port,host:port,...)")
        nodes.append((host, int(port)))
    return nodes, username, password


def max_ahead(limit: BucketLimit) -> float:
    """How far a TAT may be ahead of `now` for a request to conform: `gcra.conform`'s threshold,
    computed with the very same expression, so the script's comparison gives the same answer."""
    return limit.max_ahead


def _num(x: float) -> str:
    return repr(float(x))


class SweptCall:
    """A Redis call in flight under `BusyDeadlines.track`: its task, when it expires, the latest it
    may be pushed to, and whether the sweep cancelled it."""

    __slots__ = ("cancelling", "expired", "latest", "task", "when")

    def __init__(self, task: asyncio.Task[Any], when: float, latest: float) -> None:
        self.task = task
        self.when = when
        self.latest = latest
        self.cancelling = task.cancelling()  # cancellations requested before the call (as asyncio.timeout)
        self.expired = False


class BusyDeadlines:
    """Deadlines that tell "Redis is slow or down" from "this process is busy".

    Under a burst the proxy's event loop can run its callbacks a second late; a reply Redis sent
    in 100 us then sits unread, and a plain deadline would call Redis slow (and fail closed would
    refuse a request on a healthy Redis). A timer every `period` seconds pushes back every
    watched deadline that is about to expire, as long as Redis has answered some call since the
    previous tick (`progress()` moved), and also by however late the timer itself fired (time
    the loop was not looking). A call therefore fails only when Redis answered nothing for its
    whole timeout (down or hung), or after `max_factor` times its timeout in any case.

    Two kinds of deadline. A call's own `asyncio.timeout` (`watch`) is exact, and costs a timer
    scheduled and cancelled per call. A call `track`ed here instead has no timer of its own: the
    same tick that pushes deadlines back cancels the calls whose deadline has passed, so a call
    fails up to one `period` after its timeout. That is what the request path uses for a timeout of
    `SWEEP_ABOVE` periods or more (the default 1 s against a 50 ms period); shorter ones are watched."""

    SWEEP_ABOVE = 4  # periods: a shorter timeout gets its own exact deadline

    def __init__(self, progress: Callable[[], int], period: float = 0.05, max_factor: float = 10.0) -> None:
        self.period, self.max_factor = period, max_factor
        self.extended = 0  # deadlines pushed back (for status)
        self.swept = 0  # tracked calls cancelled by the tick (for tests and status)
        self._progress = progress
        self._seen = 0
        self._watched: dict[asyncio.Timeout, float] = {}  # deadline -> latest it may be pushed to
        self._tracked: dict[SweptCall, None] = {}  # calls in flight under the sweep (an ordered set)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._expected = 0.0

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = self._loop = asyncio.get_running_loop()
        self._expected = loop.time() + self.period
        self._handle = loop.call_at(self._expected, self._tick)
        return loop

    def watch(self, deadline: asyncio.Timeout, length: float) -> None:
        loop = self._loop if self._loop is not None else self._start()
        self._watched[deadline] = loop.time() + length * self.max_factor

    def unwatch(self, deadline: asyncio.Timeout) -> None:
        self._watched.pop(deadline, None)

    def track(self, length: float) -> SweptCall | None:
        """The current task's call, to be cancelled by the tick once `length` seconds have passed
        (pushed back as above); None when the timeout is too short for the sweep or there is no
        task: the caller then uses its own `asyncio.timeout`."""
        if length < self.SWEEP_ABOVE * self.period:
            return None
        loop = self._loop if self._loop is not None else self._start()
        task = asyncio.current_task(loop)
        if task is None:
            return None
        now = loop.time()
        call = SweptCall(task, now + length, now + length * self.max_factor)
        self._tracked[call] = None
        return call

    def untrack(self, call: SweptCall) -> None:
        self._tracked.pop(call, None)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        lag = max(0.0, now - self._expected)
        progress = self._progress()
        answered, self._seen = progress != self._seen, progress
        soon = now + 2 * self.period + lag
        self._expected = now + self.period
        self._handle = self._loop.call_at(self._expected, self._tick)
        for deadline, latest in self._watched.items():
            when = deadline.when()
            if when is None or deadline.expired():  # expired: its cancellation is on its way
                continue
            pushed = self._pushed(when, latest, lag, answered, soon)
            if pushed is not None:
                deadline.reschedule(pushed)
        if self._tracked:
            self._sweep(now, lag, answered, soon)

    def _pushed(self, when: float, latest: float, lag: float, answered: bool, soon: float) -> float | None:
        """A deadline moved later by the time the loop was not looking, and by two periods more if
        it is about to expire while Redis answers others; None when it stays (or may not move)."""
        if when >= latest:
            return None
        push = lag
        if answered and when < soon:
            push += 2 * self.period
        if push <= 0.001:
            return None
        self.extended += 1
        return min(when + push, latest)

    def _sweep(self, now: float, lag: float, answered: bool, soon: float) -> None:
        expired: list[SweptCall] = []
        for call in self._tracked:
            pushed = self._pushed(call.when, call.latest, lag, answered, soon)
            if pushed is not None:
                call.when = pushed
            if call.when <= now:
                expired.append(call)
        for call in expired:
            del self._tracked[call]
            call.expired = True
            call.task.cancel()
            self.swept += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._loop = self._handle = None


class HiredisPacking:
    """Commands packed by hiredis (C) instead of redis-py's Python packer.

    redis-py's asyncio connections pack every command in Python, argument by argument (its
    synchronous ones use hiredis when it is installed). A request's EVALSHA carries ~50 arguments:
    through the proxy that packing was ~6 % of a Redis-backed shield's CPU. `hiredis.pack_command`
    writes the same bytes (tests/store/test_redis_packing.py checks them against redis-py's own
    packer). Mixed into the pool's connection class by `pack_with_hiredis`."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        return [_hiredis_pack(args)]

    def pack_commands(self, commands: Iterable[Iterable[EncodableT]]) -> list[bytes]:
        return [b"".join([_hiredis_pack(tuple(command)) for command in commands])]


def _hiredis_pack(args: tuple[EncodableT, ...]) -> bytes:
    first = args[0]
    # As redis-py does: a command name of several words ("SCRIPT LOAD") is sent as several arguments.
    if (isinstance(first, str) and " " in first) or (isinstance(first, bytes) and b" " in first):
        args = (*first.split(), *args[1:])
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]  # hiredis' stub says a 1-tuple
    return packed


_PACKED_CLASSES: dict[type, type] = {}


def pack_with_hiredis(pool: aioredis.ConnectionPool) -> None:
    """Make the pool's future connections pack with hiredis (`HiredisPacking`), whatever class the
    URL chose for them (TCP, TLS, Unix socket, Sentinel-managed)."""
    base = pool.connection_class
    if issubclass(base, HiredisPacking):
        return
    packed = _PACKED_CLASSES.get(base)
    if packed is None:
        packed = _PACKED_CLASSES[base] = type(f"Hiredis{base.__name__}", (HiredisPacking, base), {})
    pool.connection_class = packed


class CommandPipeliner:
    """Sends the commands of concurrent callers together, on one connection held for them.

    Every command submitted in one turn of the event loop is packed (hiredis) and written as one
    write on the held connection; one reader task takes the replies off it in order and hands each
    to its caller. No pipeline object, pool checkout, retry wrapper or deadline per batch (its write
    is a plain task): through the proxy a batch carries ~5 commands, so those per-batch costs were
    most of a round trip's CPU.
    A lone caller pays nothing extra (its write holds one command).

    Faults: an error reply fails its own command only (NOSCRIPT, READONLY, ...); a connection
    error, or no reply within `deadline` while replies are owed, fails every command sent or
    waiting and drops the connection -- the next command opens another from the pool (after a
    Sentinel failover: on the new primary). A caller that gave up (its deadline) leaves its
    reply to be read and dropped, so replies never go to the wrong caller."""

    def __init__(self, client: aioredis.Redis, deadline: float, max_batch: int = 256, max_batches: int = 4) -> None:
        self._pool = client.connection_pool
        self._deadline = deadline  # seconds a reply may be owed before the connection is given up
        self._max_batch = max_batch
        # At most this many writes owe replies; later commands wait unsent. On a hung Redis they
        # time out without ever being written, so Redis does not apply a burst of calls whose
        # callers went on without it (on local state) when it resumes.
        self._max_batches = max_batches
        self._batches: collections.deque[int] = collections.deque()  # replies still owed, per write
        self._conn: Any = None  # the held connection (a redis.asyncio Connection), once open
        self._opening = False  # a task is opening the connection (a flag: mitmproxy's tasks start eagerly)
        self._unsent: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._owed: collections.deque[asyncio.Future[Any]] = collections.deque()  # sent, in order
        self._wake: asyncio.Future[None] | None = None  # the idle reader's, done when replies are owed
        self._scheduled = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.pipelines = 0  # writes sent, and the commands they carried
        self.commands = 0

    def submit(self, *command: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._unsent.append((command, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        conn = self._conn
        if conn is None:
            if not self._opening:
                self._opening = True
                self._spawn(self._open())
            return
        # (a write that failed at once has dropped the connection)
        while self._unsent and self._conn is conn and len(self._batches) < self._max_batches:
            batch = [(c, f) for c, f in self._unsent[:self._max_batch] if not f.done()]  # done: its caller gave up
            del self._unsent[:self._max_batch]
            if not batch:
                continue
            data = b"".join([_hiredis_pack(command) for command, _ in batch])
            self._owed.extend([f for _, f in batch])
            self._batches.append(len(batch))
            self.pipelines += 1
            self.commands += len(batch)
            # Written in submission order: the write itself is synchronous (only waiting for the
            # socket buffer to drain can suspend), and tasks start in the order they are made.
            self._spawn(self._write(conn, data))
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _open(self) -> None:
        try:
            conn = await asyncio.wait_for(self._pool.get_connection(),  # type: ignore[no-untyped-call]  # unannotated in redis-py
                                          self._deadline)
        except BaseException as exc:
            self._opening = False
            self._fail(self._failure(exc))
            raise
        self._opening = False
        if not conn.socket_timeout:  # a client made without one (the store's own always set it)
            conn.socket_timeout = self._deadline
        self._conn = conn
        self._spawn(self._read(conn))
        self._flush()

    async def _write(self, conn: Any, data: bytes) -> None:
        try:
            await conn.send_packed_command(data, check_health=False)
        except BaseException as exc:
            self._drop(conn, exc)
            raise

    async def _read(self, conn: Any) -> None:
        owed = self._owed
        try:
            while self._conn is conn:  # a reader of a dropped connection ends (its replies are no one's)
                if not owed:
                    self._wake = asyncio.get_running_loop().create_future()
                    await self._wake
                    continue
                try:
                    # The connection's own socket timeout (`deadline`, see `_open`): it raises
                    # and disconnects. An explicit `timeout=` would return None instead -- a reply
                    # that is not one, and every later reply would go to the wrong caller.
                    reply: Any = await conn.read_response()
                except RedisError as exc:
                    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
                        raise
                    reply = exc  # an error reply: its command fails, the connection carries on
                future = owed.popleft()
                if not future.done():
                    if isinstance(reply, RedisError):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
                batches = self._batches
                batches[0] -= 1
                if not batches[0]:
                    batches.popleft()
                    if self._unsent:
                        self._flush()  # room for a write that waited
        except BaseException as exc:
            self._drop(conn, exc)
            raise

    def _drop(self, conn: Any, exc: BaseException) -> None:
        """The connection failed: every command on it or waiting fails; the next opens another."""
        if self._conn is not conn:
            return  # already dropped
        self._conn = None
        failure = self._failure(exc)
        for future in self._owed:
            if not future.done():
                future.set_exception(failure)
        self._owed.clear()
        self._batches.clear()
        self._fail(failure)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)  # an idle reader of this connection ends
        self._spawn(self._release(conn))

    async def _release(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)
        with contextlib.suppress(Exception):
            await self._pool.release(conn)

    def _fail(self, failure: BaseException) -> None:
        for _, future in self._unsent:
            if not future.done():
                future.set_exception(failure)
        self._unsent.clear()

    @staticmethod
    def _failure(exc: BaseException) -> BaseException:
        if isinstance(exc, RedisError | OSError):  # a TimeoutError too: the store's calls report it as one
            return exc
        return RedisConnectionError(f"connection lost: {type(exc).__name__}")

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its failure was handed to the callers

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


DEFAULT_TIMEOUT = 1.0  # seconds; under a burst a busy host's event loop alone delays a reply by 100s of ms
DEFAULT_MAX_CONNECTIONS = 32  # pooled connections
DEFAULT_MAX_IN_FLIGHT = 1024  # calls waiting for Redis at once; more wait for a turn
_WARM_CONNECTIONS = 4  # opened by connect(), so the first burst does not pay for connecting
_LIST_MAX = 100_000  # entries in the penalty box, and in the allow list


class RedisStore:
    name = "redis"

    def __init__(self, client: aioredis.Redis | RedisCluster, *, url: str = "redis://",
                 timeout: float = DEFAULT_TIMEOUT, key_prefix: str = "ss:", local_cache_max: int = 10_000,
                 local_ban_recheck: float = 5.0, expiry_slack: float = 1.0, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 queue_timeout: float | None = None, list_max: int = _LIST_MAX) -> None:
        self._client = client
        self._url = redact_url(url)
        self._timeout = timeout
        self._prefix = key_prefix
        self._slack_ms = max(1, math.ceil(expiry_slack * 1000))
        self._apply_script = client.register_script(_APPLY_LUA)
        self._put_script = client.register_script(_PUT_LUA)
        self._remove_script = client.register_script(_REMOVE_LUA)
        self._list_script = client.register_script(_LIST_LUA)
        self._inspect_script = client.register_script(_INSPECT_LUA)
        self._log_script = client.register_script(_LOG_LUA)
        # The hot path's calls are pipelined together (one Redis only: a cluster client routes each
        # command by its slot itself).
        self._pipeliner = (CommandPipeliner(client, max(1.0, 2 * timeout)) if isinstance(client, aioredis.Redis)
                           else None)
        self._ban_recheck = local_ban_recheck
        self._list_max = list_max
        # Back-pressure: at most `max_in_flight` calls on the wire; the others wait their turn
        # (up to `queue_timeout`), and that wait is not counted against Redis' `timeout`.
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._max_in_flight = max_in_flight
        self._queue_timeout = queue_timeout if queue_timeout is not None else max(2.0, 10 * timeout)
        self._lag = BusyDeadlines(lambda: self.answered)
        # A cluster client: one call at a time until the layout is known (`_call_alone`).
        self._topology = asyncio.Lock() if isinstance(client, RedisCluster) else None
        self._topology_known = False
        # Local cache: ban key -> (deadline, recheck at); bucket key name -> over-limit TAT.
        self._local_bans: LRUCache[str, tuple[float, float]] | None = None
        self._local_over: LRUCache[str, float] | None = None
        if local_cache_max > 0:
            self._local_bans = LRUCache(local_cache_max)
            self._local_over = LRUCache(local_cache_max)
        # Definitions seen (bounded by the policy), for inspect(): bucket id -> limit, score id -> half-life.
        self._bucket_defs: dict[str, BucketLimit] = {}
        self._score_defs: dict[str, float] = {}
        self.round_trips = 0
        self.answered = 0  # round trips that got their reply
        self.errors = 0
        self.local_hits = 0
        self.queued = 0

    @classmethod
    def from_url(cls, url: str, timeout: float = DEFAULT_TIMEOUT, key_prefix: str = "ss:",
                 local_cache_max: int = 10_000, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 local_ban_recheck: float = 5.0, expiry_slack: float = 1.0, **_: object) -> RedisStore:
        """A store on any URL redis-py takes: redis://, rediss:// (TLS), unix:///path?db=0.

        `timeout` (seconds) bounds every call on the wire. At most `max_connections` calls are on
        the wire at once, over a pool of as many connections reused across requests; more wait
        for a turn. Options in the URL's query (e.g. `?protocol=3`) win over these defaults.
        Unknown keyword options are ignored, so one option set can configure any backend.
        """
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections + 2,  # + room for a health probe beside a full load
                timeout=timeout,
                socket_timeout=max(1.0, 2 * timeout),  # the asyncio deadline in _call is the bound per call
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),  # a retry would outlast `timeout`; the caller falls back
                protocol=2,  # RESP2: also Redis < 6 and every Valkey
                health_check_interval=0,
            )
        except ValueError as exc:  # a malformed URL
            raise ValueError(f"store URL {redact_url(url)!r}: {exc}") from None
        pack_with_hiredis(pool)
        client = aioredis.Redis.from_pool(pool)
        return cls(client, url=url, timeout=timeout, key_prefix=key_prefix, local_cache_max=local_cache_max,
                   local_ban_recheck=local_ban_recheck, expiry_slack=expiry_slack)

    @classmethod
    def from_cluster_url(cls, url: str, timeout: float = DEFAULT_TIMEOUT, key_prefix: str = "ss:",
                         local_cache_max: int = 10_000, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                         local_ban_recheck: float = 5.0, expiry_slack: float = 1.0, **_: object) -> RedisStore:
        """A store on a Redis Cluster: `redis+cluster://[user:password@]host:port,host:port,...`.

        Every key carries the hash tag of the key prefix (`{ss}:...`), so all of a request's keys
        share one hash slot and a request stays one atomic script call, one round trip, as on a
        single Redis. redis-py's cluster client follows MOVED and ASK (slot moves) and refreshes
        the topology after a failover. ValueError (one line) for a malformed URL.
        """
        nodes, username, password = parse_cluster_url(url)
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            username=username, password=password,
            max_connections=max_connections + 2,  # per node
            socket_timeout=max(1.0, 2 * timeout), socket_connect_timeout=timeout,
            protocol=2, health_check_interval=0,
            # No retry after a connection error or timeout: the script may have run, and running a
            # spend or a bucket draw twice would overdraw. The failed call follows the fail mode;
            # the client re-reads the topology on the next call (a failover). MOVED and ASK are
            # followed inside one attempt, without re-running anything on the old node.
            retry=Retry(NoBackoff(), 0),
        )
        tag = key_prefix if "{" in key_prefix else "{" + key_prefix.rstrip(":") + "}:"
        store = cls(client, url=url, timeout=timeout, key_prefix=tag, local_cache_max=local_cache_max,
                    local_ban_recheck=local_ban_recheck, expiry_slack=expiry_slack)
        store.name = "redis-cluster"
        return store

    @classmethod
    def from_sentinel_url(cls, url: str, timeout: float = DEFAULT_TIMEOUT, key_prefix: str = "ss:",
                          local_cache_max: int = 10_000, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                          local_ban_recheck: float = 5.0, expiry_slack: float = 1.0, **_: object) -> RedisStore:
        """A store on the primary that Redis Sentinel names:
        `redis+sentinel://[user:password@]sentinel:port,sentinel:port/service_name[/db]`.

        The password is the primary's (as redis-py's Sentinel takes it); after a failover the pool
        asks the sentinels again. ValueError (one line) for a malformed URL.
        """
        sentinels, username, password = parse_cluster_url(url, SENTINEL_SCHEME)
        path = url[len(SENTINEL_SCHEME):].partition("/")[2].split("?", 1)[0].strip("/")
        service, _slash, db = path.partition("/")
        if not service or (db and not db.isdigit()):
            raise ValueError(f"store URL {redact_url(url)!r}: expected {SENTINEL_SCHEME}host:port,.../service[/db]")
        bounds = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves Sentinel.__init__ unannotated
            sentinels, sentinel_kwargs=bounds, socket_timeout=max(1.0, 2 * timeout), socket_connect_timeout=timeout,
            username=username, password=password, db=int(db or 0), protocol=2)
        client = sentinel.master_for(service, max_connections=max_connections + 2)
        pack_with_hiredis(client.connection_pool)
        store = cls(client, url=url, timeout=timeout, key_prefix=key_prefix, local_cache_max=local_cache_max,
                    local_ban_recheck=local_ban_recheck, expiry_slack=expiry_slack)
        store.name = "redis-sentinel"
        return store

    async def connect(self) -> None:
        """Connect (and authenticate, as the URL says), load the scripts and open a few pooled
        connections, so that the first requests pay no set-up. StoreError if Redis does not answer."""
        async def prepare() -> None:
            # Concurrent, not a pipeline: a cluster client sends SCRIPT LOAD to every primary itself.
            scripts = (self._apply_script, self._put_script, self._remove_script, self._list_script,
                       self._inspect_script, self._log_script)
            await asyncio.gather(*(self._client.script_load(script.script) for script in scripts))
            await asyncio.gather(*(self._client.ping() for _ in range(_WARM_CONNECTIONS)))

        await self._call(prepare())

    # -- the hot path --------------------------------------------------------------------
    sync_apply = None  # every answer may wait (Store.sync_apply)

    async def apply(self, batch: Batch, now: float) -> BatchResult:
        if self._local_bans is not None:
            local = self._answer_locally(batch, now)
            if local is not None:
                self.local_hits += 1
                return local
        if not (batch.ban_keys or batch.buckets or batch.scores):
            return EMPTY_RESULT
        prefix = self._prefix
        names: list[str] = []
        for key in batch.ban_keys:
            names += (prefix + "allow:" + key, prefix + "ban:" + key)
        bucket_names = [prefix + "b:" + c.bucket_id + _SEP + c.key for c in batch.buckets]
        names += bucket_names
        names += [prefix + "s:" + u.score_id + _SEP + u.key for u in batch.scores]
        args: list[str | int] = [_num(now), len(batch.ban_keys), len(bucket_names), len(batch.scores),
                                 self._slack_ms]
        defs = self._bucket_defs
        for c in batch.buckets:
            args += (_num(c.limit.interval), _num(max_ahead(c.limit)))
            if c.bucket_id not in defs:
                defs[c.bucket_id] = c.limit
        for u in batch.scores:
            args += (_num(u.delta), _num(u.half_life))
            if u.score_id not in self._score_defs:
                self._score_defs[u.score_id] = u.half_life
        reply = await self._call(self._evalsha(self._apply_script, names, args))

        if reply[0] == _BANNED:
            index, until, allowed = int(reply[1]), float(reply[2]), int(reply[3])
            self._forget_bans(batch.ban_keys[:index])
            self._remember_ban(batch.ban_keys[index], until, now)
            return BatchResult(batch.ban_keys[index], until, -1, (), (),
                               batch.ban_keys[allowed] if allowed >= 0 else None)
        self._forget_bans(batch.ban_keys)
        refused, allowed = int(reply[0]), int(reply[1])
        nk = len(bucket_names)
        tats = [float(t) if t else None for t in reply[2:2 + nk]]
        limits = [c.limit for c in batch.buckets]
        ok = refused < 0
        states = tuple(state_after(t, now, lim, ok) for t, lim in zip(tats, limits, strict=True))
        if not ok and self._local_over is not None:
            for name, tat, lim in zip(bucket_names, tats, limits, strict=True):
                if tat is not None and conform(tat, now, lim) is None:
                    self._local_over[name] = tat
        scores = tuple(float(v) for v in reply[2 + nk:])
        return BatchResult(None, 0.0, refused, states, scores, batch.ban_keys[allowed] if allowed >= 0 else None)

    sync_append_logs = None

    async def append_logs(self, appends: tuple[LogAppend, ...], now: float) -> Logs:
        """One script call for all of a request's logs (pipelined with other requests' calls)."""
        if not appends:
            return ()
        prefix = self._prefix
        names: list[str] = []
        args: list[str | int] = []
        for a in appends:
            names += (prefix + "log:" + a.key, prefix + "logn:" + a.key)
            args += (a.entry, a.keep, a.seen, max(1, math.ceil(a.ttl * 1000)) + self._slack_ms)
        reply = await self._call(self._evalsha(self._log_script, names, args))
        return tuple(LogRead(int(n), tuple(_text(e) for e in entries), bool(whole)) for n, whole, entries in reply)

    def _answer_locally(self, batch: Batch, now: float) -> BatchResult | None:
        bans = self._local_bans
        assert bans is not None and self._local_over is not None
        for i, key in enumerate(batch.ban_keys):
            entry = bans.get(key)
            if entry is not None:
                until, recheck = entry
                if until <= now:
                    del bans[key]
                elif recheck <= now or i > 0:
                    # Time to confirm it with Redis (an operator may have lifted it); or an earlier
                    # key of the request may be on the allow list, which only Redis knows.
                    return None
                else:
                    return BatchResult(key, until, -1, (), ())
        over = self._local_over
        if batch.scores or not batch.buckets or not over:
            return None
        prefix = self._prefix
        tats: list[float | None] = []
        refused = -1
        for i, c in enumerate(batch.buckets):
            name = prefix + "b:" + c.bucket_id + _SEP + c.key
            tat = over.get(name)
            if tat is not None and conform(tat, now, c.limit) is not None:
                del over[name]  # conforms again: only Redis knows what happens next
                tat = None
            if tat is not None and refused < 0:
                refused = i
            tats.append(tat)
        if refused < 0:
            return None
        states = tuple(state_after(t, now, c.limit, False) for t, c in zip(tats, batch.buckets, strict=True))
        return BatchResult(None, 0.0, refused, states, ())

    def _forget_bans(self, keys: tuple[str, ...]) -> None:
        """Redis just said these keys are not banned (any more)."""
        bans = self._local_bans
        if bans:
            for key in keys:
                bans.pop(key, None)

    def _remember_ban(self, key: str, until: float, now: float) -> None:
        if self._local_bans is not None and until > now:
            self._local_bans[key] = (until, now + self._ban_recheck)

    # -- bans, allows, inspection -----------------------------------------------------------
    async def ban(self, key: str, until: float, now: float, reason: str = "") -> None:
        if until <= now:
            return  # already over: the same as never banned, and PX must be positive
        reply = await self._put("ban", key, until, now, reason, never_shorten=True)
        self._remember_ban(key, float(reply), now)

    async def unban(self, key: str) -> bool:
        if self._local_bans is not None:
            self._local_bans.pop(key, None)
        return bool(await self._remove("ban", key))

    async def bans(self, now: float, limit: int = 100) -> list[ListEntry]:
        return await self._list("ban", now, limit)

    async def allow(self, key: str, until: float, now: float, reason: str = "") -> None:
        if until <= now:
            await self._remove("allow", key)
            return
        if self._local_bans is not None:
            self._local_bans.pop(key, None)  # an allowed key must reach the script, which knows it
        await self._put("allow", key, until, now, reason, never_shorten=False)

    async def unallow(self, key: str) -> bool:
        return bool(await self._remove("allow", key))

    async def allows(self, now: float, limit: int = 100) -> list[ListEntry]:
        return await self._list("allow", now, limit)

    async def inspect(self, key: str, now: float) -> KeyInspection:
        prefix = self._prefix
        buckets = list(self._bucket_defs.items())
        scores = list(self._score_defs.items())
        names = [prefix + "b:" + b + _SEP + key for b, _ in buckets]
        names += [prefix + "s:" + s + _SEP + key for s, _ in scores]

        for kind in ("ban", "allow"):
            names += (prefix + kind + ":" + key, prefix + kind + "s:meta")
        reply = [_text(v) for v in await self._call(self._inspect_script(keys=names, args=[key]))]
        states = {}
        for (bucket_id, limit), raw in zip(buckets, reply, strict=False):
            if raw and float(raw) > now:
                states[bucket_id] = state_after(float(raw), now, limit, True)
        values_now = {}
        for (score_id, half_life), raw in zip(scores, reply[len(buckets):], strict=False):
            if raw:
                value, since = (float(x) for x in raw.split())
                values_now[score_id] = decay(value, since, now, half_life)
        ban, allow = _entry(key, reply[-4], reply[-3], now), _entry(key, reply[-2], reply[-1], now)
        return KeyInspection(key, states, values_now, ban, allow)

    async def _put(self, kind: str, key: str, until: float, now: float, reason: str, never_shorten: bool) -> Any:
        prefix = self._prefix
        px = math.ceil((until - now) * 1000) + self._slack_ms
        keys = [prefix + kind + ":" + key, prefix + kind + "s", prefix + kind + "s:meta"]
        args: list[str | int] = [_num(until), px, key, _num(now), reason, self._list_max, _num(now),
                                 prefix + kind + ":", 1 if never_shorten else 0]
        return await self._call(self._put_script(keys=keys, args=args))

    async def _remove(self, kind: str, key: str) -> Any:
        prefix = self._prefix
        keys = [prefix + kind + ":" + key, prefix + kind + "s", prefix + kind + "s:meta"]
        return await self._call(self._remove_script(keys=keys, args=[key]))

    async def _list(self, kind: str, now: float, limit: int) -> list[ListEntry]:
        keys = [self._prefix + kind + "s", self._prefix + kind + "s:meta"]
        reply = await self._call(self._list_script(keys=keys, args=[_num(now), max(0, limit)]))
        out = []
        for i in range(0, len(reply), 3):
            created, _, reason = _text(reply[i + 2]).partition(" ")
            out.append(ListEntry(_text(reply[i]), float(reply[i + 1]), reason, float(created or 0.0)))
        return out

    # -- the rest --------------------------------------------------------------------------
    async def spend_once(self, token_id: str, expires: float, now: float) -> bool:
        px = max(0, math.ceil((expires - now) * 1000)) + self._slack_ms
        reply = await self._call(self._client.set(self._prefix + "once:" + token_id, b"1", nx=True, px=px))
        return bool(reply)

    def retain_buckets(self, bucket_ids: frozenset[str]) -> None:
        """Nothing to do in Redis: a changed definition gets a new bucket id, and the old keys
        expire by their own PX within one window. Only the local over-limit cache is dropped."""
        self._bucket_defs = {b: lim for b, lim in self._bucket_defs.items() if b in bucket_ids}
        if self._local_over is not None:
            self._local_over.clear()

    def tracked_keys(self) -> int:
        """Entries in this process's local cache. Counting the keys in Redis needs a round
        trip (DBSIZE), which a synchronous status call must not make."""
        if self._local_bans is None or self._local_over is None:
            return 0
        return len(self._local_bans) + len(self._local_over)

    def status(self) -> dict[str, object]:
        return {"backend": self.name, "url": self._url, "timeout": self._timeout, "round_trips": self.round_trips,
                "errors": self.errors, "queued": self.queued, "deadlines_extended": self._lag.extended,
                "deadlines_swept": self._lag.swept,
                "local_cache_hits": self.local_hits, "local_cache_entries": self.tracked_keys(),
                **({"pipelines": self._pipeliner.pipelines, "pipelined_commands": self._pipeliner.commands}
                   if self._pipeliner is not None else {})}

    @property
    def timeout(self) -> float:
        return self._timeout

    async def _evalsha(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> Any:
        """The script, through the pipeliner when there is one; loaded again after a NOSCRIPT
        (a restart, a failover, SCRIPT FLUSH)."""
        if self._pipeliner is None:
            return await script(keys=keys, args=args)
        try:
            return await self._pipeliner.submit("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._client.script_load(script.script)
            return await self._pipeliner.submit("EVALSHA", script.sha, len(keys), *keys, *args)

    async def ping(self, timeout: float | None = None) -> None:
        """One PING round trip, not queued behind other calls; StoreError if Redis does not
        answer within `timeout` (default: the store's)."""
        await self._call(self._client.ping(), queue=False, timeout=timeout)

    async def close(self) -> None:
        self._lag.close()
        if self._pipeliner is not None:
            self._pipeliner.close()
        with contextlib.suppress(RedisError, OSError):  # a server that is gone must not fail shutdown
            await self._client.aclose()

    async def _call(self, call: Awaitable[Any], queue: bool = True, timeout: float | None = None) -> Any:
        """Await one Redis call within the timeout; every failure becomes a StoreError (a
        StoreTimeout when Redis did not answer in time). Waiting for a turn is not Redis' time."""
        if self._topology is not None and not self._topology_known:
            return await self._call_alone(call, queue, timeout)
        return await self._call_now(call, queue, timeout)

    async def _call_alone(self, call: Awaitable[Any], queue: bool, timeout: float | None) -> Any:
        """A cluster client learns the layout on its first call and again after a connection
        error; redis-py starts that discovery in every call that finds it needed, and concurrent
        discoveries close each other's connections. So until one call has succeeded, calls go
        one at a time; a call that waited longer than the timeout for its turn fails like one
        Redis did not answer (the fail mode), rather than queueing behind a dead node."""
        assert self._topology is not None
        try:
            async with asyncio.timeout(timeout or self._timeout):
                await self._topology.acquire()
        except TimeoutError:
            if asyncio.iscoroutine(call):
                call.close()
            self.errors += 1
            raise StoreTimeout(f"redis {self._url}: no answer within {timeout or self._timeout:g}s "
                               "(the cluster's layout is being discovered)") from None
        try:
            if not self._topology_known:
                reply = await self._call_now(call, queue, timeout)
                self._topology_known = True
                return reply
        finally:
            self._topology.release()
        return await self._call_now(call, queue, timeout)

    async def _call_now(self, call: Awaitable[Any], queue: bool, timeout: float | None) -> Any:
        if queue and self._in_flight.locked():
            self.queued += 1
            try:
                async with asyncio.timeout(self._queue_timeout):
                    await self._in_flight.acquire()
            except TimeoutError:
                if asyncio.iscoroutine(call):
                    call.close()  # never awaited: no "coroutine was never awaited" warning
                self.errors += 1
                raise StoreTimeout(f"redis {self._url}: no turn within {self._queue_timeout:g}s "
                                   f"({self._max_in_flight} calls already in flight)") from None
        elif queue:
            await self._in_flight.acquire()
        self.round_trips += 1
        limit = timeout or self._timeout
        try:
            swept = self._lag.track(limit)
            if swept is not None:  # no timer of its own: the deadlines' tick cancels it when it is late
                try:
                    reply = await call
                except asyncio.CancelledError:
                    if swept.expired and swept.task.uncancel() <= swept.cancelling:
                        raise TimeoutError from None  # the sweep's cancellation, as asyncio.timeout's
                    raise
                finally:
                    self._lag.untrack(swept)
            else:
                async with asyncio.timeout(limit) as deadline:
                    self._lag.watch(deadline, limit)
                    try:
                        reply = await call
                    finally:
                        self._lag.unwatch(deadline)
            self.answered += 1
            return reply
        except Exception as exc:  # redis errors, OSError, TimeoutError: all mean "no answer"
            self.errors += 1
            if self._topology is not None and isinstance(exc, (RedisConnectionError, RedisTimeoutError, TimeoutError,
                                                               ClusterDownError, SlotNotCoveredError)):
                self._topology_known = False  # redis-py discovers the layout again on the next call
            timed_out = isinstance(exc, (TimeoutError, RedisTimeoutError))
            what = f"no answer within {limit:g}s" if timed_out else type(exc).__name__
            detail = f": {exc}" if str(exc) else ""
            error = StoreTimeout if timed_out else StoreError
            raise error(f"redis {self._url}: {what}{detail}") from exc
        finally:
            if queue:
                self._in_flight.release()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _entry(key: str, deadline: str, meta: str, now: float) -> ListEntry | None:
    if not deadline or float(deadline) <= now:
        return None
    created, _, reason = meta.partition(" ")
    return ListEntry(key, float(deadline), reason, float(created or 0.0))
