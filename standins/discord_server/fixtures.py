"""Pytest fixtures for the Discord stand-in.

``discord_stand_in`` starts a :class:`DiscordStandIn` on 127.0.0.1 (port 0), points discord.py
at it for the test, and at teardown fails the test if a Discord rule was broken (a violation
not allowed with ``allow_violation``) or a request hit a route the stand-in does not serve.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from standins.discord_server.patching import point_discord_at
from standins.discord_server.server import DiscordStandIn


@pytest.fixture
async def discord_stand_in() -> AsyncIterator[DiscordStandIn]:
    stand_in = DiscordStandIn()
    await stand_in.start()
    try:
        with point_discord_at(stand_in.api_base, stand_in.gateway_url):
            yield stand_in
    finally:
        await stand_in.stop()
    violations = stand_in.unexpected_violations()
    unhandled = stand_in.unhandled_requests()
    problems = [f"violation {v.kind}: {v.detail} ({v.method} {v.path})" for v in violations]
    problems += [f"unhandled route: {r.method} {r.path}" for r in unhandled]
    if problems:
        pytest.fail("Discord stand-in saw problems:\n" + "\n".join(problems), pytrace=False)
