"""METRICS_ADDRESS and LOG_FORMAT parsing: good values, off, and one-line errors naming the variable."""

from __future__ import annotations

import pytest

from bot.observability.config import parse_log_format, parse_metrics_address
from bot.settings import SettingsError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        (" localhost:9108 ", ("localhost", 9108)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("metrics.internal:65535", ("metrics.internal", 65535)),
        ("[::1]:9108", ("::1", 9108)),
        ("[::]:9108", ("::", 9108)),
        ("[fe80::1]:1", ("fe80::1", 1)),
    ],
)
def test_good_addresses(raw: str, expected: tuple[str, int]) -> None:
    assert parse_metrics_address(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "  ", "off", "OFF", "false", "no", "none", "0"])
def test_metrics_are_off_by_default(raw: str | None) -> None:
    assert parse_metrics_address(raw) is None


@pytest.mark.parametrize(
    "raw",
    ["9108", ":9108", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:port", "::1:9108",
     "[::1]9108", "[::1", "[nothost]:9108", "http://127.0.0.1:9108", "bad_host:9108", "999.1.1.1:9108", "host:+80",
     "127.0.0.1:٩١٠٨"],
)
def test_bad_addresses_name_the_variable_in_one_line(raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_metrics_address(raw)
    assert isinstance(caught.value, ValueError)
    assert caught.value.variable == "METRICS_ADDRESS"
    message = str(caught.value)
    assert message.startswith("METRICS_ADDRESS: ") and "\n" not in message


@pytest.mark.parametrize(("raw", "expected"), [(None, "text"), ("", "text"), ("text", "text"), ("JSON", "json"), (" json ", "json")])
def test_log_formats(raw: str | None, expected: str) -> None:
    assert parse_log_format(raw) == expected


def test_a_bad_log_format_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^LOG_FORMAT: must be one of text, json, got 'xml'$"):
        parse_log_format("xml")
