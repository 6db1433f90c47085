"""Parsing the observability settings ``METRICS_ADDRESS`` and ``LOG_FORMAT`` (pure functions).

``bot.settings.load_settings`` calls these with the raw environment values; a bad value raises
:class:`bot.settings.SettingsError` (a ``ValueError``) whose one-line message names the variable.

- ``METRICS_ADDRESS``: where the metrics and health endpoints listen, ``host:port`` or
  ``[ipv6]:port`` (``127.0.0.1:9108``, ``[::1]:9108``). Empty, ``off``, ``false``, ``no``,
  ``none`` or ``0`` turn them off, the default.
- ``LOG_FORMAT``: ``text`` (the default) or ``json`` (one JSON object per line).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final, Literal, get_args

from bot.settings import SettingsError

__all__ = ["LOG_FORMATS", "LogFormat", "parse_log_format", "parse_metrics_address"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final[tuple[str, ...]] = get_args(LogFormat)

_OFF: Final = frozenset({"", "off", "false", "no", "none", "0", "disabled"})
_HOSTNAME: Final = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_DOTTED: Final = re.compile(r"[0-9.]+")
_PORT: Final = re.compile(r"[0-9]{1,5}")
_EXAMPLE: Final = "expected host:port such as 127.0.0.1:9108 or [::1]:9108, or off"


def parse_metrics_address(raw: str | None, *, variable: str = "METRICS_ADDRESS") -> tuple[str, int] | None:
    """``(host, port)`` to listen on, or None when metrics are off. IPv6 hosts are returned
    without brackets (``("::1", 9108)``), as aiohttp's ``TCPSite`` takes them."""
    value = (raw or "").strip()
    if value.lower() in _OFF:
        return None
    if value.startswith("["):
        close = value.find("]")
        if close < 0 or not value[close + 1:].startswith(":"):
            raise SettingsError(variable, f"{_EXAMPLE}, got {value!r}")
        host, port_text = value[1:close], value[close + 2:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise SettingsError(variable, f"{host!r} in brackets is not an IPv6 address") from None
    else:
        if value.count(":") != 1:
            hint = "put an IPv6 address in brackets, e.g. [::1]:9108" if value.count(":") > 1 else _EXAMPLE
            raise SettingsError(variable, f"{hint}, got {value!r}")
        host, port_text = value.split(":")
        if not host:
            raise SettingsError(variable, f"the host is missing ({_EXAMPLE}), got {value!r}")
        if not _HOSTNAME.fullmatch(host) or (_DOTTED.fullmatch(host) and not _is_ipv4(host)):
            raise SettingsError(variable, f"{host!r} is not a host name or IPv4 address")
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise SettingsError(variable, f"the port must be a number from 1 to 65535, got {port_text!r}")
    return host, int(port_text)


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def parse_log_format(raw: str | None, *, variable: str = "LOG_FORMAT") -> LogFormat:
    """``"text"`` (also when unset) or ``"json"``."""
    value = (raw or "").strip().lower() or "text"
    if value == "text":
        return "text"
    if value == "json":
        return "json"
    raise SettingsError(variable, f"must be one of {', '.join(LOG_FORMATS)}, got {value!r}")
