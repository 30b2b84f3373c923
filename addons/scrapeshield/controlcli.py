"""`scrapeshield ban|unban|allow|unallow|bans|allows|inspect|explain --admin HOST:PORT`: the
control API from a shell. The token comes from `--token-file` or `$SCRAPESHIELD_ADMIN_TOKEN`.

Exit status: 0 done, 1 the shield refused (unknown key for unban, bad input), 2 cannot talk to
the shield (unreachable, no token, wrong token).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TOKEN_ENV = "SCRAPESHIELD_ADMIN_TOKEN"
EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE = 0, 1, 2


class ControlError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def add_parsers(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--admin", default="127.0.0.1:9090", help="the shield's admin HOST:PORT")
        p.add_argument("--token-file", default="", help=f"file holding the bearer token (default ${TOKEN_ENV})")
        p.add_argument("--json", action="store_true", help="print the API's JSON answer")
        return p

    for name, what in (("ban", "put a key in the penalty box"), ("allow", "put a key on the allow list")):
        p = common(sub.add_parser(name, help=what + " (every replica on the same store)"))
        p.add_argument("key", help="ip=…, prefix=…/24, cookie:session=…, any key the policy uses; "
                                   "a bare address or network is taken as ip= or prefix=")
        p.add_argument("--for", dest="duration", default="1h", help="how long: 600, 90s, 15m, 2h, 1d (default 1h)")
        p.add_argument("--reason", default="", help="why, for the decision log and the listing")
    for name, what in (("unban", "lift a ban"), ("unallow", "take a key off the allow list")):
        common(sub.add_parser(name, help=what)).add_argument("key")
    for name, what in (("bans", "list active bans"), ("allows", "list allow-list entries")):
        common(sub.add_parser(name, help=what)).add_argument("--limit", type=int, default=100)
    common(sub.add_parser("inspect", help="one key's buckets, scores, detector state, ban and allow entry")
           ).add_argument("key")


def _token(path: str) -> str:
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise ControlError(f"--token-file {path}: {exc.strerror or exc}", EXIT_UNREACHABLE) from None
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise ControlError(f"no token: give --token-file or set ${TOKEN_ENV}", EXIT_UNREACHABLE)
    return token


def call(admin: str, token: str, method: str, path: str, body: dict[str, Any] | None = None,
         timeout: float = 10.0) -> dict[str, Any]:
    """One API call; the JSON answer, or ControlError with the API's own message."""
    base = admin if admin.startswith(("http://", "https://")) else f"http://{admin}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base.rstrip("/") + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the admin port is never proxied
    try:
        with opener.open(req, timeout=timeout) as resp:
            answer: dict[str, Any] = json.loads(resp.read() or b"{}")
            return answer
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        code = EXIT_UNREACHABLE if exc.code in (401, 404) else EXIT_REFUSED
        raise ControlError(f"{method} {path}: {exc.code} {message}", code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ControlError(f"cannot reach the shield's admin listener at {base}: {reason}", EXIT_UNREACHABLE) from None


def cmd_control(args: argparse.Namespace) -> int:
    try:
        token = _token(args.token_file)
        answer, text = _run(args, token)
    except ControlError as exc:
        print(f"scrapeshield {args.command}: {exc}", file=sys.stderr)
        return exc.code
    print(json.dumps(answer, indent=2, ensure_ascii=False) if args.json else text)
    if args.command in ("unban", "unallow") and not answer.get("removed"):
        return EXIT_REFUSED
    return EXIT_OK


def _q(key: str) -> str:
    return urllib.parse.urlencode({"key": key})


def _run(args: argparse.Namespace, token: str) -> tuple[dict[str, Any], str]:
    cmd = args.command
    if cmd in ("ban", "allow"):
        a = call(args.admin, token, "POST", f"/api/{cmd}s",
                 {"key": args.key, "duration": args.duration, "reason": args.reason})
        verb = "banned" if cmd == "ban" else "allowed"
        return a, f"{verb} {a['key']} for {args.duration}" + (f" ({a['reason']})" if a.get("reason") else "")
    if cmd in ("unban", "unallow"):
        path = "/api/bans" if cmd == "unban" else "/api/allows"
        a = call(args.admin, token, "DELETE", f"{path}?{_q(args.key)}")
        what = "ban" if cmd == "unban" else "allow-list entry"
        return a, (f"removed the {what} of {a['key']}" if a.get("removed") else f"{a['key']} had no {what}")
    if cmd in ("bans", "allows"):
        a = call(args.admin, token, "GET", f"/api/{cmd}?limit={args.limit}")
        rows = a[cmd]
        if not rows:
            return a, f"no {'active bans' if cmd == 'bans' else 'allow-list entries'}"
        lines = [f"{'key':<40} {'left':>8}  reason"]
        lines += [f"{e['key']:<40} {_left(e['seconds_left']):>8}  {e['reason']}" for e in rows]
        return a, "\n".join(lines)
    if cmd == "inspect":
        a = call(args.admin, token, "GET", f"/api/inspect?{_q(args.key)}")
        return a, _inspect_text(a)
    raise ControlError(f"unknown command {cmd}", EXIT_REFUSED)


def _left(seconds: float) -> str:
    s = int(seconds)
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


def _inspect_text(a: dict[str, Any]) -> str:
    lines = [f"key {a['key']}"]
    ban, allow = a.get("ban"), a.get("allow")
    lines.append("  ban:    " + (_entry_text(ban) if ban else "-"))
    lines.append("  allow:  " + (_entry_text(allow) if allow else "-"))
    lines.append("  buckets:" + ("" if a["buckets"] else " -"))
    lines += [f"    {name}: {b['remaining']} left" + ("" if b["allowed"] else f", retry in {b['retry_after']}s")
              for name, b in a["buckets"].items()]
    lines.append("  scores:" + ("" if a["scores"] else " -"))
    lines += [f"    {name}: {value}" for name, value in a["scores"].items()]
    det = a.get("detectors")
    lines.append("  detectors:" + ("" if det else " - (not tracked under this key)"))
    if det:
        lines += [f"    {k}: {v}" for k, v in det.items()]
    return "\n".join(lines)


def _entry_text(entry: dict[str, Any]) -> str:
    return f"{_left(entry['seconds_left'])} left" + (f" ({entry['reason']})" if entry.get("reason") else "")
