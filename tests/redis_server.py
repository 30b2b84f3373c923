"""A real `redis-server` for tests and benchmarks: loopback only, no persistence, stopped by pid.

    with RedisServer() as server:          # a free port on 127.0.0.1, a temporary directory
        store = RedisStore.from_url(server.url)
        server.stop(); server.start()      # the same port again: a restart for fault tests
        server.pause(); server.resume()    # SIGSTOP / SIGCONT: a server that hangs

`RedisServerMissing` is raised, with the fix in its message, when there is no `redis-server`
binary; `start_or_fail()` turns that into a test failure: a test that needs Redis must fail
then, never skip.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

READY_TIMEOUT = 10.0
STOP_GRACE_SECONDS = 5.0


class RedisServerMissing(RuntimeError):
    pass


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RedisServerMissing(
            "redis-server is not installed, and the Redis store tests need a real one: "
            "run scripts/system-packages (apt-get install redis-server)")
    return path


def start_or_fail(**kwargs: Any) -> RedisServer:
    """Start a RedisServer, or fail the calling test (never skip it) when redis-server is missing."""
    try:
        return RedisServer(**kwargs).start()
    except RedisServerMissing as exc:
        import pytest

        pytest.fail(str(exc), pytrace=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process. `port` stays the same across stop()/start()."""

    def __init__(self, workdir: Path | str | None = None, port: int | None = None, unix_socket: bool = False,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.binary = redis_server_binary()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="scrapeshield-redis-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port is not None
        self.port = port or _free_port()
        self.unix_path = self.workdir / "redis.sock" if unix_socket else None
        self.log_path = self.workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_args = extra_args

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        if self.unix_path is None:
            raise ValueError("start the server with unix_socket=True for a unix:// URL")
        return f"unix://{self.unix_path}?db=0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> Self:
        """Start and wait until it answers PING. A port taken meanwhile is retried with another."""
        for _attempt in range(5):
            if self._launch():
                return self
            if self._fixed_port:
                break
            self.port = _free_port()
        raise RuntimeError(f"redis-server did not start on port {self.port}; log:\n{self._log_tail()}")

    def _launch(self) -> bool:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--logfile", str(self.log_path), "--daemonize", "no",
                "--protected-mode", "no"]
        if self.unix_path is not None:
            args += ["--unixsocket", str(self.unix_path), "--unixsocketperm", "700"]
        args += self.extra_args
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            if _ping(self.port):
                return True
            time.sleep(0.02)
        self.stop()
        return False

    def stop(self) -> None:
        """SIGTERM by pid (SIGKILL after a grace period); a paused server is resumed first."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGCONT)
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def kill(self) -> None:
        """SIGKILL by pid: the server vanishes without closing anything."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers -- the hang case."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class RedisClusterServers:
    """A real Redis Cluster of `masters` masters (and `replicas_per_master` replicas each) from
    redis-server processes on free loopback ports, created with `redis-cli --cluster create`.

        with RedisClusterServers() as cluster:
            store = RedisStore.from_cluster_url(cluster.url)
            cluster.move_slot(slot, to=other_master)   # a resharding step: MOVED / ASK for clients
            cluster.nodes[i].kill(); cluster.nodes[i].start()   # a failed master, and its return
    """

    NODE_TIMEOUT_MS = 1000  # how soon the cluster fails a master over to its replica

    def __init__(self, masters: int = 3, replicas_per_master: int = 0, workdir: Path | str | None = None) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="scrapeshield-cluster-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.masters, self.replicas_per_master = masters, replicas_per_master
        # Replicas sync at once (no 5 s wait for more replicas to join a diskless transfer), and a
        # replica may take over whatever its data age: a test kills a master seconds after start.
        args = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.NODE_TIMEOUT_MS), "--cluster-require-full-coverage", "no",
                "--repl-diskless-sync-delay", "0", "--cluster-replica-validity-factor", "0")
        self.nodes = [RedisServer(self.workdir / f"node{i}", extra_args=args)
                      for i in range(masters * (1 + replicas_per_master))]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:self.masters])

    def start(self) -> Self:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RedisServerMissing("redis-cli is not installed (it comes with redis-server): "
                                     "run scripts/system-packages (apt-get install redis-server)")
        for node in self.nodes:
            node.start()
            node._fixed_port = True  # a restart must come back on the port the cluster knows
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                        "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=60)
        self.wait_ok()
        return self

    def client(self, node: RedisServer) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5.0, decode_responses=True)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node says cluster_state:ok and agrees on all 16384 slots, and every
        running replica has its master's data (so that it can take over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                running = [n for n in self.nodes if n.process is not None]
                infos = [self.client(n).cluster("info") for n in running]
                links = [self.client(n).info("replication") for n in running]
                if (all(i["cluster_state"] == "ok" and int(i["cluster_slots_assigned"]) == 16384 for i in infos)
                        and all(r.get("master_link_status", "up") == "up" for r in links)):
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not become ok")

    def replica_of(self, master: RedisServer) -> RedisServer:
        """A running replica of `master`."""
        master_id = self.node_id(master)
        for line in str(self.client(master).execute_command("CLUSTER", "NODES")).splitlines():
            fields = line.split()
            if fields[3] == master_id and "slave" in fields[2]:
                port = int(fields[1].split("@")[0].rpartition(":")[2])
                return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no replica of 127.0.0.1:{master.port}")

    def node_id(self, node: RedisServer) -> str:
        return str(self.client(node).cluster("myid"))

    def owner(self, slot: int) -> RedisServer:
        """The master serving `slot`, as the first running node sees it."""
        probe = next(n for n in self.nodes if n.process is not None)
        for start, end, master, *_ in self.client(probe).execute_command("CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                port = int(master[1])
                return next(n for n in self.nodes if n.port == port)
        raise LookupError(slot)

    def move_slot(self, slot: int, to: RedisServer) -> None:
        """Move one slot and its keys to master `to`, the way `redis-cli --cluster reshard` does:
        IMPORTING/MIGRATING (clients get ASK meanwhile), MIGRATE the keys, then SETSLOT NODE
        everywhere (clients get MOVED from then on)."""
        source = self.owner(slot)
        src, dst = self.client(source), self.client(to)
        src_id, dst_id = self.node_id(source), self.node_id(to)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS", *keys)
        for node in self.nodes:
            if node.process is not None:
                self.client(node).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def start_cluster_or_fail(**kwargs: Any) -> RedisClusterServers:
    """Start a RedisClusterServers, or fail the calling test (never skip it) without redis-server."""
    try:
        return RedisClusterServers(**kwargs).start()
    except RedisServerMissing as exc:
        import pytest

        pytest.fail(str(exc), pytrace=False)


class SentinelServer:
    """One Redis Sentinel (`redis-server sentinel.conf --sentinel`) watching `primary` as service
    `service`; loopback, a free port, stopped by pid."""

    def __init__(self, primary: RedisServer, workdir: Path, service: str = "shield") -> None:
        self.primary, self.service = primary, service
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}/0"

    def start(self) -> Self:
        conf = self.workdir / "sentinel.conf"
        log = self.workdir / "sentinel.log"
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\nlogfile {log}\n"
                        f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 1\n"
                        f"sentinel down-after-milliseconds {self.service} 1000\n"
                        f"sentinel failover-timeout {self.service} 5000\n")
        self.process = subprocess.Popen([redis_server_binary(), str(conf), "--sentinel"], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if _ping(self.port):
                return self
            time.sleep(0.02)
        self.close()
        raise RuntimeError(f"redis sentinel did not start on port {self.port}")

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5.0, decode_responses=True)

    def primary_port(self) -> int:
        """The port of the primary this sentinel names now."""
        return int(self.client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)[1])

    def wait_replicas(self, count: int, timeout: float = 30.0) -> None:
        """Until the sentinel knows `count` replicas of the primary, linked and in sync: only a
        replica it knows can be promoted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replicas = self.client().execute_command("SENTINEL", "REPLICAS", self.service)
            linked = [r for r in replicas if _fields(r).get("master-link-status") == "ok"]
            if len(linked) >= count:
                return
            time.sleep(0.1)
        raise RuntimeError(f"sentinel on port {self.port} did not see {count} replica(s)")

    def close(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


def _fields(reply: Any) -> dict[str, str]:
    """A SENTINEL REPLICAS entry (a flat name/value list, or a dict in newer redis-py) as a dict."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}


def start_replica_or_fail(primary: RedisServer, **kwargs: Any) -> RedisServer:
    """A RedisServer replicating `primary` (REPLICAOF), started and in sync."""
    extra = ("--replicaof", "127.0.0.1", str(primary.port), *kwargs.pop("extra_args", ()))
    replica = start_or_fail(extra_args=extra, **kwargs)
    import redis

    client = redis.Redis(host="127.0.0.1", port=replica.port, socket_timeout=5.0, decode_responses=True)
    deadline = time.monotonic() + READY_TIMEOUT
    while client.info("replication").get("master_link_status") != "up":
        if time.monotonic() > deadline:
            raise RuntimeError(f"replica on port {replica.port} did not sync with {primary.port}")
        time.sleep(0.05)
    return replica
