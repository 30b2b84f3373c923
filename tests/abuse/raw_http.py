"""A raw HTTP/1.1 request on its own socket: the path and headers go out byte for byte (httpx and
requests normalise `..`, `//` and escapes away, which is exactly what the abuse tests must not do)."""
from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RawAnswer:
    status: int
    headers: dict[str, str]  # lower-case names; the last value of a repeated header

    @property
    def from_shield(self) -> bool:
        """Answered by the shield itself (throttle, block, challenge), not passed upstream."""
        return "shield-action" in self.headers


def raw_get(host: str, port: int, path: str, headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
            source_ip: str = "127.0.0.1", timeout: float = 10.0) -> RawAnswer:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
             *(f"{k}: {v}" for k, v in headers)]
    with socket.create_connection((host, port), timeout=timeout, source_address=(source_ip, 0)) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1]) if head and head[0].startswith("HTTP/") else 0
    parsed = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return RawAnswer(status, parsed)
