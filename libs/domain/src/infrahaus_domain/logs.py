"""Structured logging shared by the API and the worker: JSON lines with request/operation context, secrets redacted."""

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
operation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("operation_id", default=None)
actor_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("actor", default=None)

REDACTED = "[redacted]"
# Field names whose values are secrets wherever they appear in structured log data.
_SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|private_?key|ticket|csrf|authorization|cookie|credential|api_?key)", re.IGNORECASE
)
# Secret-shaped substrings that must not survive even inside free text.
_SECRET_TEXT = [
    (re.compile(r"(PVEAPIToken=[^=\s]+=)\S+"), r"\1" + REDACTED),
    (re.compile(r"(PVEAuthCookie=)[^;\s]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL), REDACTED),
]
_CONTEXT = (("request_id", request_id_var), ("operation_id", operation_id_var), ("actor", actor_var))
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def redact(value: Any, key: str | None = None) -> Any:
    """Return ``value`` with secrets replaced: by field name for mappings, by shape for text."""
    if key is not None and _SECRET_KEY.search(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the context ids and any ``extra=`` fields, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        for name, var in _CONTEXT:
            value = getattr(record, name, None) or var.get()
            if value is not None:
                payload[name] = value
        for attr, value in record.__dict__.items():
            if attr in payload:
                continue
            if attr not in _STANDARD_ATTRS and not attr.startswith("_"):
                payload[attr] = redact(value, attr)
        if record.exc_info:
            # The exception type only: exception text may carry upstream bodies.
            payload["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(payload, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """Human-readable lines for the embedded default, still redacted and still carrying the context ids."""

    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(
            f"{name}={value}"
            for name, var in _CONTEXT
            if (value := getattr(record, name, None) or var.get()) is not None
        )
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.name}: {redact_text(record.getMessage())}"
        return f"{line} [{ids}]" if ids else line


def _stamp_context(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        for name, var in _CONTEXT:
            value = var.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return record

    make_record._infrahaus = True  # type: ignore[attr-defined]
    return make_record


def stderr_handler(fmt: Literal["json", "text"] = "json") -> logging.Handler:
    """The one handler of every process: stderr in the chosen format, redacted (replaced by `configure_logging`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler._infrahaus = True  # type: ignore[attr-defined]
    return handler


def server_logging_config(
    level: str = "INFO", fmt: Literal["json", "text"] = "json", *, server_level: str | None = None
) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn's `log_config`: uvicorn applies it in its supervisor and in every
    server process before the app exists, so its own lines (startup, bind errors, invalid requests, exceptions it
    catches) come out in the same redacted format, with an exception's type and never its traceback.
    `server_level` quiets uvicorn's own lines (the embedded mode prints its own banner)."""
    server = {"level": server_level.upper()} if server_level else {}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"()": "infrahaus_domain.logs.stderr_handler", "fmt": fmt}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            # uvicorn's loggers keep no handlers of their own: everything goes through the root's.
            "uvicorn": {"handlers": [], "propagate": True, **server},
            "uvicorn.error": {"handlers": [], "propagate": True, **server},
            "uvicorn.access": {"handlers": [], "propagate": True, "level": "WARNING"},
        },
    }


def configure_logging(level: str = "INFO", fmt: Literal["json", "text"] = "json") -> None:
    """Route the root logger to stderr in the chosen format; idempotent.

    Records are stamped with the context ids when created, so a line formatted later (a queue handler,
    a test capture) still carries the ids of the request or operation that logged it.
    """
    if not getattr(logging.getLogRecordFactory(), "_infrahaus", False):
        logging.setLogRecordFactory(_stamp_context(logging.getLogRecordFactory()))
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_infrahaus", False):
            root.removeHandler(existing)
    root.addHandler(stderr_handler(fmt))
    root.setLevel(level.upper())
    # Third-party access logs repeat what the request middleware already records with ids.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


@contextmanager
def log_context(
    *, request_id: str | None = None, operation_id: str | None = None, actor: str | None = None
) -> Iterator[None]:
    """Bind context ids for the duration of a block (a request, an actor run)."""
    tokens = []
    for var, value in ((request_id_var, request_id), (operation_id_var, operation_id), (actor_var, actor)):
        if value is not None:
            tokens.append((var, var.set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
