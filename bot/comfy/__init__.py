"""An async client library for ComfyUI's HTTP and websocket API: the HTTP client, one websocket
hub per server, following a prompt to its end, typed results and one exception hierarchy.

A library of its own: it imports nothing else of the bot (not discord, not the settings; a server
is its own :class:`~bot.comfy.client.ServerConfig`). The bot's job service uses it, and so do the
operator tools.
"""

from bot.comfy.client import ComfyClient, ServerConfig
from bot.comfy.errors import (
    ComfyAuthError,
    ComfyBadRequest,
    ComfyBadResponse,
    ComfyError,
    ComfyNotFound,
    ComfyServerError,
    ComfyTimeout,
    ComfyTooLarge,
    ComfyUnreachable,
    ComfyValidationError,
)
from bot.comfy.events import Reconnected, is_terminal
from bot.comfy.follow import Outcome, follow_prompt
from bot.comfy.client_id import load_or_create_client_id
from bot.comfy.hub import ComfyHub, Subscription
from bot.comfy.models import FileRef, HistoryEntry, OutputFile, QueuedPrompt, QueueItem, QueueState, SystemStats

__all__ = [
    "ComfyAuthError",
    "ComfyBadRequest",
    "ComfyBadResponse",
    "ComfyClient",
    "ComfyError",
    "ComfyHub",
    "ComfyNotFound",
    "ComfyServerError",
    "ComfyTimeout",
    "ComfyTooLarge",
    "ComfyUnreachable",
    "ComfyValidationError",
    "FileRef",
    "HistoryEntry",
    "Outcome",
    "OutputFile",
    "QueueItem",
    "QueueState",
    "QueuedPrompt",
    "Reconnected",
    "ServerConfig",
    "Subscription",
    "SystemStats",
    "follow_prompt",
    "is_terminal",
    "load_or_create_client_id",
]
