"""`scrapeshield explain`: why a request gets the decision it gets.

    scrapeshield explain https://shop.example/api/users/7 -H 'User-Agent: curl/8' --client 203.0.113.7
    scrapeshield explain --flow capture.flows --index 3 --policy candidate.yaml --format json
    scrapeshield explain https://shop.example/ --admin 127.0.0.1:9090 --token-file token   # the live shield

Exit status: 0 explained, 2 unusable input (invalid policy, bad request description, unreadable
flow file, or the live shield refused).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from .explain import RequestDescription, explain_offline, render_text

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def add_parser(sub: Any, default_policy: str) -> None:
    p = sub.add_parser("explain", help="show why a request gets its decision: every rule, bucket, signal, score")
    p.add_argument("url", nargs="?", help="the request URL (or give --flow)")
    p.add_argument("-X", "--method", default="GET")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="a request header, repeatable, in the order the client sends them")
    p.add_argument("--client", default="127.0.0.1", help="the client address the shield sees (its TCP peer)")
    p.add_argument("--flow", help="take the request from this flow file instead (mitmdump -w / run --save)")
    p.add_argument("--index", type=int, default=1, help="which HTTP request of --flow (1-based, default 1)")
    p.add_argument("--policy", default=default_policy, help="the policy to explain against (offline)")
    p.add_argument("--admin", default="", help="ask the live shield at this admin HOST:PORT instead (its state)")
    p.add_argument("--token-file", default="", help="the control API token (with --admin)")
    p.add_argument("--format", choices=("text", "json"), default="text")


def description_from_flow(path: str, index: int) -> RequestDescription:
    from .mitm.flowfile import as_sent, iter_http_flows
    from .replay.recorded import CutOff

    cut: list[CutOff] = []  # a file cut off while written still holds the requests before the cut
    for n, flow in enumerate(iter_http_flows(path, cut), 1):
        if n == index:
            req = as_sent(flow).request
            peer = flow.client_conn.peername[0] if flow.client_conn.peername else "127.0.0.1"
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in req.headers.fields]
            return RequestDescription.from_dict({"method": req.method, "url": req.pretty_url, "headers": headers,
                                                 "client": peer})
    if cut:
        raise ValueError(f"{cut[0].where()}: it holds fewer than {index} HTTP requests")
    raise ValueError(f"{path}: has fewer than {index} HTTP requests")


def cmd_explain(args: argparse.Namespace) -> int:
    from .policy.errors import PolicyInvalid
    from .replay.core import ReplayInputError

    try:
        if args.flow:
            description = description_from_flow(args.flow, args.index)
        elif args.url:
            description = RequestDescription.parse_header_args(args.method, args.url, args.header, args.client)
        else:
            raise ValueError("give a URL or --flow FILE")
        if args.admin:
            from .controlcli import ControlError, _token, call

            try:
                result = call(args.admin, _token(args.token_file), "POST", "/api/explain",
                              {"method": description.method, "url": description.url,
                               "headers": [list(h) for h in description.headers], "client": description.client})
            except ControlError as exc:
                raise ValueError(str(exc)) from None
        else:
            result = asyncio.run(explain_offline(args.policy, description))
    except PolicyInvalid as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ValueError, ReplayInputError) as exc:
        print(f"scrapeshield explain: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.format == "json":
        sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    else:
        print(render_text(result))
    return EXIT_OK
