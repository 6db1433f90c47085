"""An async client library for ComfyUI's HTTP and websocket API.

It never imports discord: the bot's services use it, and so do the operator tools.
"""

from bot.comfy.client import ComfyClient
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
from bot.comfy.hub import ComfyHub, Subscription, load_or_create_client_id
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
    "Subscription",
    "SystemStats",
    "follow_prompt",
    "is_terminal",
    "load_or_create_client_id",
]
