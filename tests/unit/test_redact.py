"""Credentials never reach a log line or a stored text, in any form derived from them."""

from __future__ import annotations

import base64
import io
import logging
from urllib.parse import quote

import pytest

from toolcatalog.api.redact import MASK, Redactor, mask_userinfo
from toolcatalog.cli import RedactingFilter

TOKEN = "s3cr3t-Token/Value+0042"


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor()
    r.add(TOKEN)
    return r


@pytest.mark.parametrize("prefix", ["", "x", "xy"])
def test_every_derived_form_is_masked_inside_a_longer_text(redactor: Redactor, prefix: str) -> None:
    standard = base64.b64encode(f"{prefix}{TOKEN} and more".encode()).decode()
    urlsafe = base64.urlsafe_b64encode(f"{prefix}{TOKEN}".encode()).decode()
    for text in (f"Authorization: Bearer {TOKEN}", f"t={quote(TOKEN, safe='')}", standard, urlsafe):
        masked = redactor.redact(text)
        assert MASK in masked and TOKEN not in masked and quote(TOKEN, safe="") not in masked
        assert not redactor.contains(masked)


def test_short_values_are_not_treated_as_credentials() -> None:
    r = Redactor()
    r.add("ab")
    assert len(r) == 0 and r.redact("abc ab") == "abc ab"


@pytest.mark.parametrize(("text", "expected"), [
    ("GET http://user:p4ss@127.0.0.1:8080/mcp", "GET http://***@127.0.0.1:8080/mcp"),
    ("{'url': 'https://tok3n@mcp.example/x'}", "{'url': 'https://***@mcp.example/x'}"),
    ("mail ops@example.com about http://host/a@b", "mail ops@example.com about http://host/a@b"),
])
def test_userinfo_of_any_url_is_masked(text: str, expected: str) -> None:
    assert mask_userinfo(text) == expected


def test_the_log_filter_masks_message_arguments_and_tracebacks(redactor: Redactor) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("answer %s from %s", {"description": f"send Bearer {TOKEN}"}, "http://u:pw@127.0.0.1/")
        try:
            raise ValueError(f"input_value='{TOKEN}'")
        except ValueError:
            logger.exception("validation failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert TOKEN not in output and "pw@" not in output
    assert "send ***" in output and "http://***@127.0.0.1/" in output
    assert "ValueError: input_value='***'" in output
