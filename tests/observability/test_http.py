"""A real ObservabilityServer on 127.0.0.1 answers /metrics, /healthz and /readyz."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.observability.http import ObservabilityServer, Readiness, ServerHealth, readiness_from
from bot.observability.metrics import BotMetrics, RefusalReason

from .helpers import value

pytestmark = pytest.mark.timeout(15)


class Facts:
    """What the readiness probe reads; the tests change it between requests."""

    def __init__(self) -> None:
        self.logged_in = True
        self.store_open = True
        self.servers = [ServerHealth("gpu-a", up=True, runs_default_workflow=True)]

    def readiness(self) -> Readiness:
        return readiness_from(discord_logged_in=self.logged_in, store_open=self.store_open,
                              servers=self.servers, default_workflow="svd")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def serve(metrics: BotMetrics, probe: object) -> ObservabilityServer:
    server = ObservabilityServer(("127.0.0.1", 0), metrics.registry, probe)  # type: ignore[arg-type]
    await server.start()
    return server


async def test_metrics_healthz_and_readyz(session: aiohttp.ClientSession) -> None:
    metrics = BotMetrics(server_names=["gpu-a"], process_metrics=False)
    metrics.refused(RefusalReason.MODERATION)
    facts = Facts()
    server = await serve(metrics, facts.readiness)
    host, port = server.bound_address
    base = f"http://{host}:{port}"
    try:
        async with session.get(base + "/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
        assert value(text, "animate_bot_refusals_total", reason="moderation") == 1

        async with session.get(base + "/healthz") as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "ok"}

        async with session.get(base + "/readyz") as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["ready"] is True and "reasons" not in body

        facts.logged_in = False
        facts.servers = [ServerHealth("gpu-a", up=False, runs_default_workflow=False),
                         ServerHealth("gpu-b", up=True, runs_default_workflow=False)]
        async with session.get(base + "/readyz") as resp:
            assert resp.status == 503
            body = await resp.json()
        assert body["ready"] is False
        assert body["checks"] == {"discord_logged_in": False, "store_open": True, "servers_up_running_default": False}
        assert body["reasons"] == [
            "not logged in to Discord",
            "ComfyUI server gpu-a is down",
            "ComfyUI server gpu-b is up but cannot run the default workflow svd",
        ]
    finally:
        await server.stop()


async def test_an_async_probe_that_fails_or_hangs_means_not_ready(session: aiohttp.ClientSession) -> None:
    metrics = BotMetrics(process_metrics=False)
    hang = asyncio.Event()

    async def failing() -> Readiness:
        raise RuntimeError("store exploded at 10.0.0.9")

    async def hanging() -> Readiness:
        await hang.wait()
        raise AssertionError("unreachable")

    for probe, reason in ((failing, "the readiness check failed"), (hanging, "the readiness check timed out")):
        server = ObservabilityServer(("127.0.0.1", 0), metrics.registry, probe, readiness_timeout=0.05)
        await server.start()
        host, port = server.bound_address
        try:
            async with session.get(f"http://{host}:{port}/readyz") as resp:
                assert resp.status == 503
                body = await resp.json()
            assert body["reasons"] == [reason]
            assert "10.0.0.9" not in str(body)
        finally:
            await server.stop()


async def test_an_async_probe_that_answers(session: aiohttp.ClientSession) -> None:
    metrics = BotMetrics(process_metrics=False)

    async def probe() -> Readiness:
        return Readiness(discord_logged_in=True, store_open=True, servers_up_running_default=True)

    server = await serve(metrics, probe)
    host, port = server.bound_address
    try:
        async with session.get(f"http://{host}:{port}/readyz") as resp:
            assert resp.status == 200
    finally:
        await server.stop()
    with pytest.raises(RuntimeError):
        server.bound_address  # noqa: B018


def test_readiness_reasons_name_servers_by_their_safe_names() -> None:
    verdict = readiness_from(
        discord_logged_in=True, store_open=False,
        servers=[ServerHealth("gpu box\n<b>", up=False, runs_default_workflow=False)],
        default_workflow="svd",
    )
    assert not verdict.ready
    assert verdict.reasons == ("the job store is not open", "ComfyUI server gpu_box__b_ is down")
    none = readiness_from(discord_logged_in=True, store_open=True, servers=[], default_workflow="svd")
    assert none.reasons == ("no ComfyUI server is configured",)
    one_able = readiness_from(
        discord_logged_in=True, store_open=True, default_workflow="svd",
        servers=[ServerHealth("a", up=False, runs_default_workflow=False), ServerHealth("b", up=True, runs_default_workflow=True)],
    )
    assert one_able.ready and one_able.reasons == ()
