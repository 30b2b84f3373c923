"""The application log (what the shield says about itself, not the decision log): human text on
stderr by default, or one JSON object per line (`--log-format json`) for a log pipeline."""
from __future__ import annotations

import json
import logging
import sys
from typing import TextIO

from .decisionlog import iso_time

_QUIET = ("mitmproxy.proxy.server", "aiohttp.access")


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message"[, "worker"][, "exception"]}`: ISO 8601 UTC time, one line."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {"time": iso_time(record.created), "level": record.levelname.lower(),
                                  "logger": record.name, "message": record.getMessage()}
        if self.worker is not None:
            out["worker"] = self.worker
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None,
                      worker: int | None = None) -> None:
    """`worker` (a serving process under `--workers`) prefixes text lines; JSON lines carry it as a field."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        who = "" if worker is None else f"[worker {worker}] "
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {who}%(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in _QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
