"""Structured JSON logs, one object per line. Extra fields go in `extra={"fields": {...}}`.

A flush under a storm logs a line per group (100,000 lines for 100,000 groups), so a line
is kept cheap: the standard library's caller lookup and thread and process names, which
these lines never show, are turned off (the logging HOWTO's "Optimization"), the
timestamp's text is made once per second, and in the event loop the stream is flushed once
per turn of the loop rather than once per line (warnings and errors at once). Where a line
is written per group, `info()` writes it without making a `LogRecord` (the same line)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from typing import Any, TextIO

import orjson

from proxy.jsontypes import JsonObject

__all__ = ["Health", "JsonFormatter", "LineHandler", "info", "setup_logging"]


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _ts(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # (format runs under its handler's lock: one thread at a time)
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        return self.line(record.created, record.levelname.lower(), record.name, record.getMessage(),
                         fields if isinstance(fields, dict) else None,
                         self.formatException(record.exc_info) if record.exc_info else None)

    def line(self, created: float, level: str, name: str, msg: str, fields: JsonObject | None,
             exc: str | None = None) -> str:
        out = {"ts": self._ts(created), "level": level, "logger": name, "msg": msg}
        if fields:
            out.update(fields)
        if exc:
            out["exc"] = exc
        return orjson.dumps(out, default=str).decode()


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """One line per record; in an event loop the stream is flushed at the end of the
    loop's turn (a flush of 100 groups writes once), elsewhere and for warnings at once."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._soon: asyncio.AbstractEventLoop | None = None  # the loop that will flush
        self._soon_thread = 0  # its thread

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.flush()
            else:
                self._flush_soon()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - as logging's own handlers: reported, never raised
            self.handleError(record)

    def info(self, fmt: JsonFormatter, name: str, msg: str, fields: JsonObject) -> None:
        """An info line as `emit` writes it with `fmt` (its formatter), from its parts (see
        `info()`)."""
        with self.lock:  # type: ignore[union-attr]  # (createLock made it)
            try:
                self.stream.write(fmt.line(time.time(), "info", name, msg, fields) + self.terminator)
                self._flush_soon()
            except RecursionError:
                raise
            except Exception:  # noqa: BLE001 - as emit: reported, never raised
                self.handleError(logging.makeLogRecord({"name": name, "msg": msg}))

    def _flush_soon(self) -> None:
        soon = self._soon
        if soon is not None and self._soon_thread == threading.get_ident() and soon.is_running():
            return  # this thread's loop flushes at the end of its turn (a thread runs one
            # loop at a time; asyncio.get_running_loop() costs a getpid() system call)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another thread, or no loop: at once
            self.flush()
            return
        if self._soon is not loop:  # (a loop that ended before its turn did flushes nothing)
            self._soon, self._soon_thread = loop, threading.get_ident()
            loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._soon = None
        self.flush()


class Health:
    """A dependency that can fail and heal (the store, PagerDuty): its failures are logged
    when it goes down and when it is back, not at every attempt (a store that cannot be
    reached logged 2-4 warnings a second)."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger, self.what = logger, what
        self.down_since = 0.0  # 0: up
        self.failures = 0

    @property
    def up(self) -> bool:
        return not self.down_since

    def failed(self, error: str, **fields: Any) -> None:
        self.failures += 1
        if self.down_since:
            return
        self.down_since = time.monotonic()
        self.logger.warning(f"{self.what} unavailable; retrying (logged again when it is back)",
                            extra={"fields": {"error": error, **fields}})

    def ok(self) -> None:
        if not self.down_since:
            return
        self.logger.warning(f"{self.what} available again", extra={"fields": {
            "down_s": round(time.monotonic() - self.down_since, 1), "failed_attempts": self.failures}})
        self.down_since, self.failures = 0.0, 0


_direct: tuple[logging.Logger, LineHandler] | None = None  # setup_logging's


def info(logger: logging.Logger, msg: str, fields: JsonObject) -> None:
    """`logger.info(msg, extra={"fields": fields})` for lines written per group. While the
    logger is the one setup_logging made (or a child of it without handlers of its own),
    as it made it (its one handler, with a JsonFormatter, no filters, no level on the
    handler), the line is written directly: a
    LogRecord and its trip through logging's layers cost about three times the line itself.
    Otherwise (a test's caplog, a handler added) it is logged the standard way."""
    if not logger.isEnabledFor(logging.INFO):
        return
    if _direct is not None:
        root, handler = _direct
        fmt = handler.formatter
        if ((logger is root or logger.parent is root and logger.propagate and not logger.handlers)
                and root.handlers == [handler] and type(fmt) is JsonFormatter
                and handler.level <= logging.INFO and not logger.filters and not handler.filters):
            handler.info(fmt, logger.name, msg, fields)  # (a record's own logger's filters
            return  # apply, not those of the logger it propagates to: as logging does)
    logger.info(msg, extra={"fields": fields})


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """JSON lines at `level` and above to `stream` (standard error)."""
    logging._srcfile = None  # no sys._getframe() per record
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if stream is None:  # standard error, but not line-buffered (sys.stderr is): see LineHandler
        stream = open(sys.stderr.fileno(), "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                      buffering=1 << 16, closefd=False)
    global _direct
    handler = LineHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("alert_proxy")
    for old in root.handlers:
        with contextlib.suppress(ValueError, OSError):  # its stream may be closed
            old.flush()  # its last lines
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    _direct = (root, handler)
