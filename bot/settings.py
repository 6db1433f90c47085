"""Typed settings, read once at start from the environment (after python-dotenv loads ``.env``).

``load_settings`` validates every value and raises :class:`SettingsError` naming the
variable at fault, so the command line can print one clear line and exit with status 2.
Secrets (the Discord token, the ComfyUI token, passwords in URLs) are kept out of
``repr`` and therefore out of every log line. Each ComfyUI server is the client library's own
:class:`bot.comfy.client.ServerConfig` (name, URL, credentials), parsed here from ``COMFYUI_URLS``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from bot.comfy.client import ServerConfig

DEFAULT_COMFYUI_URL = "http://127.0.0.1:8188"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

__all__ = ["ServerConfig", "Settings", "SettingsError", "configure_logging", "load_settings", "parse_server_entry"]


class SettingsError(ValueError):
    """A setting has a bad value. ``variable`` names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True)
class Settings:
    """Everything the bot reads from its environment, validated."""

    discord_token: str | None = field(default=None, repr=False)
    comfyui_servers: tuple[ServerConfig, ...] = ()
    comfyui_token: str | None = field(default=None, repr=False)
    comfyui_max_pending: int = 1
    comfyui_timeout: float = 30.0
    workflows_dir: Path = Path("workflows")
    data_dir: Path = Path("data")
    dev_guild_id: int | None = None
    log_level: str = "INFO"
    max_input_bytes: int = 25 * 1024 * 1024
    max_input_pixels: int = 100_000_000
    job_timeout: float = 900.0
    max_waiting_jobs: int = 50
    max_jobs_per_member: int = 2
    retention_days: int = 7
    allow_dms: bool = False
    owner_ids: tuple[int, ...] = ()
    #: where /metrics, /healthz and /readyz listen, ``(host, port)``; None (the default): off
    metrics_address: tuple[str, int] | None = None
    log_format: Literal["text", "json"] = "text"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"


def parse_server_entry(entry: str, index: int) -> ServerConfig:
    """Parse one ``COMFYUI_URLS`` entry: ``url`` or ``name=url``."""
    name: str | None = None
    raw = entry.strip()
    if "=" in raw and not raw.split("=", 1)[0].strip().lower().startswith(("http://", "https://")):
        name, raw = (part.strip() for part in raw.split("=", 1))
        if not name:
            raise SettingsError("COMFYUI_URLS", f"entry {index + 1} has an empty name before '='")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            "COMFYUI_URLS",
            f"entry {index + 1} is not an http(s) URL (expected e.g. http://127.0.0.1:8188 or name=http://host:8188)",
        )
    try:
        port = parts.port
    except ValueError:
        raise SettingsError("COMFYUI_URLS", f"entry {index + 1} has a bad port") from None
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return ServerConfig(name=name or f"server-{index + 1}", url=url, username=username, password=password)


def _servers(value: str) -> tuple[ServerConfig, ...]:
    entries = [e for e in value.split(",") if e.strip()]
    if not entries:
        raise SettingsError("COMFYUI_URLS", "no server given")
    servers = tuple(parse_server_entry(e, i) for i, e in enumerate(entries))
    names = [s.name for s in servers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SettingsError("COMFYUI_URLS", f"server names must be unique (repeated: {', '.join(dupes)})")
    return servers


def _int(env: Mapping[str, str], var: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(var, f"must be a whole number, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise SettingsError(var, f"must be {bound}, got {value}")
    return value


def _float(env: Mapping[str, str], var: str, default: float, minimum: float) -> float:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(var, f"must be a number of seconds, got {raw!r}") from None
    if not value >= minimum:
        raise SettingsError(var, f"must be at least {minimum:g}, got {raw}")
    return value


def _bool(env: Mapping[str, str], var: str, default: bool) -> bool:
    raw = env.get(var, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(var, f"must be true or false, got {raw!r}")


def _snowflake(var: str, raw: str) -> int:
    raw = raw.strip()
    if not raw.isdigit() or not 15 <= len(raw) <= 21:
        raise SettingsError(var, f"must be a Discord ID (a number of 17-20 digits), got {raw!r}")
    return int(raw)


def _optional_str(env: Mapping[str, str], var: str) -> str | None:
    raw = env.get(var, "").strip()
    return raw or None


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build and validate :class:`Settings` from an environment mapping."""
    # imported here: bot.observability.config raises this module's SettingsError
    from bot.observability.config import parse_log_format, parse_metrics_address

    token = _optional_str(env, "DISCORD_TOKEN")
    if token is not None and (any(c.isspace() for c in token) or len(token) < 20):
        raise SettingsError("DISCORD_TOKEN", "does not look like a bot token (copy it from the Developer Portal, Bot tab)")
    log_level = env.get("LOG_LEVEL", "").strip().upper() or "INFO"
    if log_level not in LOG_LEVELS:
        raise SettingsError("LOG_LEVEL", f"must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    dev_guild = _optional_str(env, "DEV_GUILD_ID")
    owners_raw = env.get("OWNER_IDS", "")
    return Settings(
        discord_token=token,
        comfyui_servers=_servers(env.get("COMFYUI_URLS", "").strip() or DEFAULT_COMFYUI_URL),
        comfyui_token=_optional_str(env, "COMFYUI_TOKEN"),
        comfyui_max_pending=_int(env, "COMFYUI_MAX_PENDING", 1, 0, 100),
        comfyui_timeout=_float(env, "COMFYUI_TIMEOUT", 30.0, 1.0),
        workflows_dir=Path(env.get("WORKFLOWS_DIR", "").strip() or "workflows"),
        data_dir=Path(env.get("DATA_DIR", "").strip() or "data"),
        dev_guild_id=_snowflake("DEV_GUILD_ID", dev_guild) if dev_guild else None,
        log_level=log_level,
        max_input_bytes=_int(env, "MAX_INPUT_BYTES", 25 * 1024 * 1024, 1024),
        max_input_pixels=_int(env, "MAX_INPUT_PIXELS", 100_000_000, 4096),
        job_timeout=_float(env, "JOB_TIMEOUT", 900.0, 10.0),
        max_waiting_jobs=_int(env, "MAX_WAITING_JOBS", 50, 1),
        max_jobs_per_member=_int(env, "MAX_JOBS_PER_MEMBER", 2, 1),
        retention_days=_int(env, "RETENTION_DAYS", 7, 1),
        allow_dms=_bool(env, "ALLOW_DMS", False),
        owner_ids=tuple(_snowflake("OWNER_IDS", o) for o in owners_raw.split(",") if o.strip()),
        metrics_address=parse_metrics_address(env.get("METRICS_ADDRESS"), variable="METRICS_ADDRESS"),
        log_format=parse_log_format(env.get("LOG_FORMAT"), variable="LOG_FORMAT"),
    )


def configure_logging(level: str, log_format: str = "text") -> None:
    """Set up the root logger once, at start (never on import). ``log_format="json"``: one JSON
    object per line (:class:`bot.observability.json_logs.JsonFormatter`); the filters that mask
    secrets and drop tracebacks (:mod:`bot.logs`) are added to the same handler afterwards, and a
    handler runs its filters before its formatter, so JSON lines are masked like text ones."""
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if log_format == "json":
        from bot.observability.json_logs import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter(tracebacks=level.upper() == "DEBUG"))
