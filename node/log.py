"""Structured logging: one logger per package, each line with its context, never a secret.

    log = node.log.get("mpc")
    log.info("round_done", peer=2, session="9f3c", round=3)

Secret values are wrapped in `Secret`, whose repr and str print `<redacted>`; the renderer also
drops any key named like a secret, as a second line of defence.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

_SECRET_KEYS = frozenset({"secret", "share", "password", "passphrase", "private_key", "xi", "key_data", "seed"})


class Secret:
    """Holds a secret value; prints as <redacted> in repr, str and logs."""

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value

    def reveal(self):
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__

    def __eq__(self, other):
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self):
        return hash(("Secret", id(self)))

    def __reduce__(self):
        raise TypeError("a Secret is not picklable")


def _redact(_, __, event_dict):
    for k in list(event_dict):
        if k.lower() in _SECRET_KEYS:
            event_dict[k] = "<redacted>"
    return event_dict


_configured = False


def configure(level: str | None = None, json: bool | None = None) -> None:
    global _configured
    level = (level or os.environ.get("CUSTODY_LOG_LEVEL", "info")).upper()
    if json is None:
        json = os.environ.get("CUSTODY_LOG_FORMAT", "console") == "json"
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _configured = True


def get(package: str, **context):
    if not _configured:
        configure()
    return structlog.get_logger(package).bind(**context)
