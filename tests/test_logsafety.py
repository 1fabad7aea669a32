"""Logs never hold an interaction token or the bot token; members' text only at -vv."""

from __future__ import annotations

import logging

import pytest

from bot.logsafety import PAYLOAD_LOGGERS, REDACTED, configure_logging, redact

INTERACTION_TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5OnNlY3JldA.token-part_42"


@pytest.mark.parametrize(
    "line",
    [
        f"POST https://discord.com/api/v10/interactions/123456/{INTERACTION_TOKEN}/callback with",
        f"PATCH https://discord.com/api/v10/webhooks/987/{INTERACTION_TOKEN}/messages/@original",
        f'{{"t": "INTERACTION_CREATE", "d": {{"id": "1", "token": "{INTERACTION_TOKEN}"}}}}',
        f"{{'type': 2, 'token': '{INTERACTION_TOKEN}', 'data': {{}}}}",
    ],
)
def test_interaction_tokens_are_redacted_wherever_they_appear(line):
    cleaned = redact(line)

    assert INTERACTION_TOKEN not in cleaned
    assert REDACTED in cleaned


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in PAYLOAD_LOGGERS}
    yield
    root.handlers[:], root.level = saved
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_every_level_is_redacted_including_tracebacks_and_the_bot_token(restore_logging, capsys):
    configure_logging(2, secrets=("the-bot-token",))
    log = logging.getLogger("discord.http")

    log.debug("PATCH /webhooks/1/%s/messages/@original", INTERACTION_TOKEN)
    try:
        raise RuntimeError(f"failed for /interactions/5/{INTERACTION_TOKEN}/callback")
    except RuntimeError:
        logging.getLogger("storybot").exception("sending with the-bot-token failed")

    printed = capsys.readouterr().err
    assert INTERACTION_TOKEN not in printed and "the-bot-token" not in printed
    assert printed.count(REDACTED) == 4


@pytest.mark.parametrize(("verbosity", "payloads"), [(0, False), (1, False), (2, True)])
def test_payloads_with_members_text_are_logged_only_at_the_opt_in_level(
    restore_logging, capsys, verbosity, payloads
):
    configure_logging(verbosity)

    logging.getLogger("discord.gateway").debug("event: {'content': 'a member wrote this'}")
    logging.getLogger("storybot").debug("a storybot detail")

    printed = capsys.readouterr().err
    assert ("a member wrote this" in printed) is payloads
    assert ("a storybot detail" in printed) is (verbosity >= 1)
