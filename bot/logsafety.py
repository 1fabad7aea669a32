"""Logging that keeps secrets out: interaction tokens, the bot token, and members' text.

An interaction token lets anyone answer as the bot for 15 minutes, so it is redacted from every
record at every level. discord.py's debug logs of HTTP requests and gateway events carry members'
text; they are shown only at the separate opt-in level ``-vv``.
"""

from __future__ import annotations

import logging
import re
import sys

# Loggers whose debug records carry request and event payloads: members' text.
PAYLOAD_LOGGERS = ("discord.http", "discord.gateway", "discord.webhook.async_", "discord.state")

_TOKENS = (
    # In REST paths: /interactions/{id}/{token}/callback and /webhooks/{app id}/{token}/...
    re.compile(r"(/(?:interactions|webhooks)/\d+/)[^/\s\"'?]+"),
    # In payloads, as JSON or as a Python dict: "token": "..." / 'token': '...'
    re.compile(r"""(["']token["']\s*:\s*["'])[^"']+"""),
)
REDACTED = "[redacted]"


class Redact(logging.Filter):
    """Rewrites each record with interaction tokens and the given secrets masked."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:  # a traceback may quote a URL or payload
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with interaction tokens and ``secrets`` replaced by a marker."""
    for pattern in _TOKENS:
        text = pattern.sub(rf"\g<1>{REDACTED}", text)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def configure_logging(verbosity: int, secrets: tuple[str, ...] = (), quiet: bool = False) -> Redact:
    """Log to stderr: INFO (``quiet``: warnings only, for the console); ``-v`` debug without
    payloads; ``-vv`` payloads (members' text) too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    redactor = Redact(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbosity else logging.WARNING if quiet else logging.INFO)
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
    return redactor
