"""Secrets from the settings are masked in every line the process logs."""

from __future__ import annotations

import io
import logging

from bot.logs import RedactingFilter, secret_replacements
from bot.settings import load_settings

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.secretsecretsecretsecret"


def test_tokens_passwords_and_urls_are_masked_in_messages_and_tracebacks() -> None:
    settings = load_settings(
        {
            "DISCORD_TOKEN": TOKEN,
            "COMFYUI_TOKEN": "comfy-bearer-secret",
            "COMFYUI_URLS": "gpu=http://alice:hunter22@10.1.2.3:8188/comfy",
        }
    )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(secret_replacements(settings)))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("cannot reach %s with %s and %s", "http://10.1.2.3:8188/comfy/prompt", TOKEN, "comfy-bearer-secret")
        try:
            raise RuntimeError("connect to 10.1.2.3:8188 as alice:hunter22 failed")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    for secret in (TOKEN, "comfy-bearer-secret", "hunter22", "10.1.2.3"):
        assert secret not in text
    assert "<server gpu>" in text and "<discord token>" in text and "RuntimeError" in text
