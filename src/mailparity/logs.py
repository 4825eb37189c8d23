"""Structured log fields and a JSON formatter.

While a job runs, the records logged under ``mailparity`` can carry the provider id, the message
id and the job id as record attributes (``record.provider_id``, ``record.message_id``,
``record.job_id``) so that a log pipeline can filter on them instead of parsing messages. The
pipeline sets them in context variables (:func:`bind`); :class:`ContextFilter`, added to a
handler, copies them onto every record that handler sees (a field the call site passed with
``extra=`` wins). :class:`JsonFormatter` writes one JSON object per record with those fields;
``mailparity --log-format json`` uses both.

The fields are identifiers, never secrets: tokens, client secrets and ``clientState`` values are
kept out of log messages by every module (see the project's rules), and no formatter here adds
anything but the record's own message, its level, logger name, time and these ids.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, ParamSpec, TypeVar

__all__ = ["FIELDS", "ContextFilter", "JsonFormatter", "bind", "binds_message_id", "current"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: The record attributes the pipeline fills in.
FIELDS = ("provider_id", "message_id", "job_id")

_VARS: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(f"mailparity_{name}", default=None) for name in FIELDS
}


@contextlib.contextmanager
def bind(**fields: str | None) -> Iterator[None]:
    """Set log fields (``provider_id=``, ``message_id=``, ``job_id=``) for the enclosed block of
    this thread or task; restored on exit. None leaves a field as it was.

    Raises:
        TypeError: a field that is not one of :data:`FIELDS`.
    """
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise TypeError(f"unknown log fields: {unknown}")
    tokens = [
        (_VARS[name], _VARS[name].set(value)) for name, value in fields.items() if value is not None
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def binds_message_id(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a function with a ``message_id`` parameter: its calls log with that field."""
    index = list(inspect.signature(func).parameters).index("message_id")
    var = _VARS["message_id"]

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        value = kwargs["message_id"] if "message_id" in kwargs else (
            args[index] if len(args) > index else None
        )
        token = var.set(value if isinstance(value, str) else None)
        try:
            return func(*args, **kwargs)
        finally:
            var.reset(token)

    return wrapper


def current() -> dict[str, str]:
    """The log fields set now (only those that are set)."""
    values = {name: var.get() for name, var in _VARS.items()}
    return {name: value for name, value in values.items() if value is not None}


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (never drops one).

    Add it to a handler (``handler.addFilter(ContextFilter())``): a filter on a logger does not
    see the records of its child loggers. A value passed with ``extra=`` is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    the fields of :data:`FIELDS` that are set (from the record, else the bound context), and
    ``exception`` (the formatted traceback) when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        bound = current()
        for name in FIELDS:
            value = getattr(record, name, None) or bound.get(name)
            if value is not None:
                data[name] = str(value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False)
