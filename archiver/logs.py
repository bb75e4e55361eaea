"""Logging fit for cron: quiet on success, one line per problem, JSON when asked."""

import json
import logging
import sys
import time
from typing import Any

from archiver.guards import printable, redact
from archiver.timeutil import iso, utc_ms

#: Fields a log record may carry (``extra=``) that JSON lines show as their own members.
FIELDS = ("source", "run_id")


def _json_line(created: float, level: str, message: str, *, logger: str | None = None,
               trace: str | None = None, **about: Any) -> str:  # fmt: skip
    """One JSON object: time, level, logger, message, what the line is about (``FIELDS``)
    and the traceback, each where known."""
    from datetime import UTC, datetime

    when = iso(utc_ms(datetime.fromtimestamp(created, UTC)))
    entry = {"time": when, "level": level, "logger": logger, "message": message, **about,
             "traceback": trace}  # fmt: skip
    return json.dumps({k: v for k, v in entry.items() if v is not None}, ensure_ascii=False)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        trace = redact(self.formatException(record.exc_info)) if record.exc_info else None
        return _json_line(record.created, record.levelname.lower(), redact(record.getMessage()),
                          logger=record.name, trace=trace,
                          **{f: getattr(record, f, None) for f in FIELDS})  # fmt: skip


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        """``LEVEL: message``, one line whatever a server put in it, then -v's traceback."""
        line = f"{record.levelname}: {printable(redact(record.getMessage()))}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record, not at setup."""

    def emit(self, record: logging.LogRecord) -> None:  # under the handler's lock
        self.stream = sys.stderr
        super().emit(record)


def configure(*, verbose: bool, quiet: bool, log_format: str) -> None:
    """Warnings and errors go to stderr; ``-v`` adds progress, ``-q`` keeps errors only.
    SQLAlchemy's warnings come the same way, one line each (their traceback with -v)."""
    # The same in JSON: cron mails whatever a run prints, so a good run prints nothing.
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    handler = _StderrHandler()
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    handler.addFilter(lambda record: _shown(record, verbose))
    for name in ("archiver", "sqlalchemy"):  # botocore's and urllib3's: to their NullHandler
        logger = logging.getLogger(name)
        logger.handlers[:], logger.propagate = [handler], False
        logger.setLevel(level if name == "archiver" else max(level, logging.WARNING))


def _shown(record: logging.LogRecord, verbose: bool) -> bool:
    """Nothing for a stop that a library logged where it landed (SQLAlchemy's pool does,
    with a traceback): the stop has its own line (``cli.app.report``). Traces with -v."""
    stop = record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt)
    record.exc_info = record.exc_info if verbose else None
    return not stop


def error_line(message: str, log_format: str, *, trace: str | None = None,
               source: str | None = None) -> str:  # fmt: skip
    """The one line an error prints: ``error: …`` or a JSON object under --log-format json
    (with its time, its source where known, and the traceback when there is one)."""
    if log_format == "json":
        return _json_line(time.time(), "error", message, source=source, trace=trace or None)
    return f"error: {message}"
