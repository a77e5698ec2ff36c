"""Log formats: human text (the default) or one JSON object per line (`--log-format json`).

Structured fields travel as `extra={...}` on the log call; the JSON formatter writes the
ones in `FIELDS` and nothing else from the record, so a message text or a key can only
reach a log line if a caller puts it in the message itself (none does; a test checks).
The current request id is added to every record.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from core.observability.requests import current_request_id

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
FORMATS = ("text", "json")

FIELDS = (
    "request_id", "conversation_id", "turn_id", "org", "agent", "provider", "model",
    "dialect", "route", "method", "status", "code", "duration_ms", "first_token_ms",
    "prompt_tokens", "completion_tokens", "trace_id", "worker",
)


class RequestIdFilter(logging.Filter):
    """Stamps the current request id on records that do not carry one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = current_request_id()
        return True


class WorkerFilter(logging.Filter):
    """Stamps which `serve --workers` process wrote the record: N processes share one
    stderr, and a reader must be able to tell their lines apart."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ).replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value not in (None, ""):
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The default text format, with the request id appended when there is one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", "")
        if request_id:
            text = f"{text} [request_id={request_id}]"
        worker = getattr(record, "worker", None)
        return text if worker is None else f"{text} [worker={worker}]"


def configure_logging(fmt: str = "text", level: str = "INFO",
                      worker: int | None = None) -> None:
    """Install one stderr handler on the root logger in the chosen format. Like
    `logging.basicConfig`, it leaves a root logger that someone else configured (a test
    runner calling the CLI in-process) alone."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    if worker is not None:
        handler.addFilter(WorkerFilter(worker))
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(level)


_OURS = "_switchboard_handler"
