"""The wiring: :func:`build` makes every service once and passes them, typed, to :class:`AnimateBot`.

discord.py's ``examples/advanced_startup.py`` is the model: :func:`serve` opens the one
``aiohttp.ClientSession``, :func:`build` makes everything on it, and the bot is run until a signal.

In order:

1. :func:`bot.services.build_services` (discord-free): clock, ComfyUI clients, job store,
   workflows, one websocket hub per server, server pool, job service, edit scheduler,
   admission policy -> :class:`~bot.services.Services`;
2. :class:`AnimateBot` from those services. It makes what needs the Discord client: the
   :class:`~bot.discord.delivery.DiscordDelivery` (status messages and results, on the edit
   scheduler), the :class:`~bot.discord.audit.AuditLog` and the :class:`~bot.discord.animate_flow.AnimateFlow`
   (from an interaction to a job, and the job buttons' handler);
3. the job service is connected to them: ``jobs.connect(bot.job_delivery, result_check=...)`` (the delivery, timed
   when metrics are on) and ``jobs.add_listener(bot.audit.on_job_event)``; the safety gate's refusals and withheld results
   go to ``bot.audit.on_safety_event``, and the delivery judges each result with the gate
   (:class:`~bot.discord.safe_delivery.ResultGate`) before posting it; with ``METRICS_ADDRESS``
   set, the bot's :class:`~bot.observability.wiring.Observability` (metrics feed, loop-lag monitor,
   ``/metrics`` ``/healthz`` ``/readyz`` server) starts listening to the job service too.

The bot is an ``AutoShardedBot``: discord.py asks Discord how many gateway shards it needs (one
for most bots) and runs them all in this process; shard health shows in ``/status``, the log
and ``/readyz`` (:mod:`bot.discord.shards`).

Cogs get their services from the bot in their extension's ``setup(bot)``, explicitly (for example
``Queue(jobs=bot.jobs, policy=bot.policy)``). A job button's click reaches its handler through the
client it came to (``interaction.client.job_buttons``, typed by
:class:`~bot.discord.buttons.JobButtonClient`): discord.py makes the button itself.

Running: :func:`serve` starts the observability endpoints first (when on), so ``/healthz``
answers while the bot logs in; ``setup_hook`` (after login, before the gateway) loads the
extensions, syncs the commands, then starts the services: the safety detector is loaded (in a
thread; a failure is recorded and logged once, and every job that needs it is refused), the edit
scheduler, then the job service, whose recovery may deliver results and so needs the logged-in HTTP client.
:meth:`AnimateBot.close` stops them in the reverse order (the audit log first, then the job
service, the delivery, the edit scheduler, the observability endpoints), then the Discord
connection. :func:`serve` owns the session and closes it last.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord.ext import commands

from bot.comfy.client import ComfyClient
from bot.discord.animate_flow import AnimateFlow
from bot.discord.audit import AuditLog
from bot.discord.buttons import JobButton
from bot.discord.delivery import DiscordDelivery
from bot.discord.edit_scheduler import EditScheduler
from bot.discord.safe_delivery import ResultGate
from bot.discord.shards import ShardHealth, shard_health, shards_down
from bot.discord.tree import BotTree
from bot.discord.withheld import WithheldReview
from bot.discord.withheld_buttons import WithheldButton
from bot.jobs.service import Delivery, JobService
from bot.logs import log_failure
from bot.moderation.policy import AdmissionPolicy
from bot.observability.diagnostics import Diagnostics
from bot.observability.discord_trace import discord_trace
from bot.observability.legs import TimedDelivery
from bot.observability.wiring import Observability
from bot.safety.gate import SafetyGate
from bot.services import Overrides, Services, build_services
from bot.settings import Settings
from bot.storage import Storage

log = logging.getLogger(__name__)

# The extensions loaded at start, in order. Add new cogs here.
EXTENSIONS: tuple[str, ...] = ("cogs.meta", "cogs.animate", "cogs.queue", "cogs.mod", "cogs.owner")

COMMAND_HASH_FILE = "commands.sha256"

__all__ = ["EXTENSIONS", "AnimateBot", "Overrides", "build", "run_bot", "serve"]


def bot_intents() -> discord.Intents:
    """No privileged intent: slash commands and components arrive as interactions anyway."""
    intents = discord.Intents.none()
    intents.guilds = True
    return intents


def command_digest(tree: discord.app_commands.CommandTree[Any]) -> str:
    """A hash of the global command payloads, to sync only when they changed."""
    payload = sorted((cmd.to_dict(tree) for cmd in tree.get_commands()), key=lambda c: (c.get("type", 1), c["name"]))
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class AnimateBot(commands.AutoShardedBot):
    """The bot. It holds the services it was given and the three that need it as their Discord
    client (delivery, audit log, the animate flow), plus its observability when metrics are on,
    and starts and stops them all in one order."""

    def __init__(
        self,
        services: Services,
        *,
        extensions: Sequence[str] = EXTENSIONS,
        sync: bool = False,
        **options: Any,
    ) -> None:
        options.setdefault("intents", bot_intents())
        # Mentions are off unless a message names whom it may ping (the requester of a result).
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        metrics = services.metrics
        if metrics is not None:
            options.setdefault("http_trace", discord_trace(metrics))  # 429s and failed edits
        super().__init__(command_prefix=commands.when_mentioned, tree_cls=BotTree, help_command=None, **options)
        self.settings: Settings = services.settings
        self.session: aiohttp.ClientSession = services.session
        self.comfy: Mapping[str, ComfyClient] = services.comfy
        self.store: Storage = services.store
        self.jobs: JobService = services.jobs
        self.policy: AdmissionPolicy = services.policy
        self.edit_scheduler: EditScheduler = services.edit_scheduler
        self.safety: SafetyGate = services.safety
        self.delivery = DiscordDelivery(self, services.edit_scheduler, now=services.clock.now,
                                        member_options=services.jobs.member_option_names, service=services.jobs,
                                        result_check=ResultGate(self, services.safety))
        self.audit = AuditLog(self, services.store)
        #: what the job service hands results to: the delivery, timed when metrics are on
        self.job_delivery: Delivery = self.delivery
        self.observability: Observability | None = None
        if metrics is not None and services.settings.metrics_address is not None:
            timed = TimedDelivery(self.delivery, lambda seconds: metrics.legs(deliver_s=seconds), now=services.clock.now)
            self.job_delivery = timed
            self.observability = Observability(metrics, services.settings.metrics_address, jobs=services.jobs,
                                               store=services.store, discord_state=self.discord_state, delivery=timed)
        self.animate_flow = AnimateFlow(jobs=services.jobs, delivery=self.delivery, policy=services.policy,
                                        settings=services.settings, safety=services.safety,
                                        on_refused=self.observability.feed.refused if self.observability else None)
        self.withheld_review = WithheldReview(self, withheld=services.store.withheld, jobs=services.jobs,
                                              policy=services.policy, audit=self.audit)
        self.add_dynamic_items(JobButton, WithheldButton)  # a click finds its handler here: job_buttons, withheld_buttons
        self.initial_extensions: tuple[str, ...] = tuple(extensions)
        self.force_sync = sync
        self.synced: str | None = None  # "guild", "global", "unchanged" or "failed" after setup_hook
        self._stopped = False

    @property
    def job_buttons(self) -> AnimateFlow:
        """What a job button's click is handed to (:class:`~bot.discord.buttons.JobButtonClient`)."""
        return self.animate_flow

    @property
    def withheld_buttons(self) -> WithheldReview:
        """What Release/Delete on a withheld result is handed to (:class:`~bot.discord.withheld_buttons.WithheldButtonClient`)."""
        return self.withheld_review

    async def setup_hook(self) -> None:
        await self.start_observability()  # serve() started it already; tests that call start() directly get it here
        for name in self.initial_extensions:
            await self.load_extension(name)
        for cog in self.cogs.values():
            for menu in getattr(cog, "context_menus", ()):
                self.tree.add_command(menu)
        self.synced = await self.sync_commands()
        await self.start_services()

    async def sync_commands(self) -> str:
        """Sync to ``DEV_GUILD_ID`` when set; else globally with ``--sync`` or when the commands changed.

        A failure (Discord down, rate limited) is logged and the bot keeps running with the
        commands Discord already has; the next start tries again.
        """
        try:
            if self.settings.dev_guild_id is not None:
                guild = discord.Object(id=self.settings.dev_guild_id)
                self.tree.copy_global_to(guild=guild)
                commands_ = await self.tree.sync(guild=guild)
                log.info("Synced %d commands to the development guild %s", len(commands_), guild.id)
                return "guild"
            digest = command_digest(self.tree)
            path = self.settings.data_dir / COMMAND_HASH_FILE
            stored = await asyncio.to_thread(_read_text, path)
            if not self.force_sync and stored == digest:
                log.info("Slash commands unchanged since the last sync; not syncing")
                return "unchanged"
            commands_ = await self.tree.sync()
            await asyncio.to_thread(_write_text, path, digest)
            log.info("Synced %d commands globally (they can take a while to appear)", len(commands_))
            return "global"
        except discord.HTTPException as exc:
            log.error("Could not sync slash commands (HTTP %s); keeping the ones Discord has", exc.status)
            return "failed"

    async def on_ready(self) -> None:
        log.info("Logged in as %s (id %s) in %d servers over %d gateway shard(s)", self.user,
                 self.user.id if self.user else "?", len(self.guilds), self.shard_count or 1)

    async def on_shard_ready(self, shard_id: int) -> None:
        log.info("Gateway shard %d ready", shard_id)

    async def on_shard_resumed(self, shard_id: int) -> None:
        log.info("Gateway shard %d resumed", shard_id)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        if not self.is_closed():
            log.warning("Gateway shard %d disconnected; discord.py reconnects it", shard_id)

    def shard_health(self) -> list[ShardHealth]:
        """Each gateway shard: connected or not, latency (``/status``, ``/readyz``)."""
        return shard_health(self)

    def discord_state(self) -> tuple[bool, str | None]:
        """Whether the bot is logged in with every shard connected, and if not why (for ``/readyz``)."""
        if self.is_closed():
            return False, "the connection is closed"
        if not self.is_ready():
            return False, "still connecting"
        down = shards_down(self.shard_health())
        if down:
            return False, f"gateway shard(s) {', '.join(map(str, down))} disconnected"
        return True, None

    async def start_observability(self) -> None:
        """Serve ``/metrics``, ``/healthz`` and ``/readyz`` when ``METRICS_ADDRESS`` is set (once;
        ``OSError`` when the address cannot be bound)."""
        if self.observability is not None and not self.observability.started and not self._stopped:
            await self.observability.start()

    async def start_services(self) -> None:
        """Load the safety detector, then start the services in their order: edit scheduler,
        delivery, job service, audit log.

        The delivery and the audit log have nothing to start (they act when the job service calls
        them); :meth:`close` stops all four in the reverse order. The job service's recovery may
        deliver results at once: its delivery (connected by :func:`build`), the edit scheduler and
        the logged-in HTTP client are ready by now.
        """
        await self.safety.load()  # before any job: a failure is recorded, logged once, and fails closed
        self.edit_scheduler.start()
        log.info("Starting the job service")
        await self.jobs.start()

    def _stop_order(self) -> Iterable[tuple[str, Callable[[], Awaitable[None]]]]:
        """The reverse of :meth:`start_services`: the audit log stops posting (records are still
        stored); the job service stops dispatching, following and delivering (unfinished jobs stay
        stored; it closes the hubs and the store); the delivery stops its status followers; the
        edit scheduler sends the edits still queued, then stops; last the observability endpoints."""
        stops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("audit log", self.audit.close), ("job service", self.jobs.close),
            ("delivery", self.delivery.close), ("edit scheduler", self.edit_scheduler.close)]
        if self.observability is not None:
            stops.append(("metrics and health endpoints", self.observability.stop))
        return stops

    async def close(self) -> None:
        """Stop the services (once; see :meth:`_stop_order`), then the Discord connection."""
        await self.close_services()
        await super().close()

    async def close_services(self) -> None:
        """Stop the services (once), leaving the Discord connection alone: :meth:`close` for a bot
        that was started; alone for one that never was (discord.py's sharded client cannot close then)."""
        if self._stopped:
            return
        self._stopped = True
        for name, closer in self._stop_order():
            try:
                await closer()
            except Exception:
                log_failure(log, logging.ERROR, "Closing the %s failed", name)

    def diagnostic_sources(self) -> list[tuple[str, Any]]:
        """What SIGUSR1's diagnostics line asks for ``memory_counts()`` (:mod:`bot.observability.diagnostics`)."""
        return [("jobs", self.jobs), *self.cogs.items()]


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


async def build(settings: Settings, session: aiohttp.ClientSession, *, sync: bool = False,
                extensions: Sequence[str] = EXTENSIONS, overrides: Overrides | None = None,
                **options: Any) -> AnimateBot:
    """Every service, the bot, and the job service connected to the bot's delivery and audit log
    (see the module docstring). Nothing runs yet: ``bot.start(token)`` does. ``overrides`` and
    ``options`` (passed to discord.py's client) are for tests and benchmarks."""
    services = await build_services(settings, session, overrides)
    bot = AnimateBot(services, extensions=extensions, sync=sync, **options)
    services.jobs.connect(bot.job_delivery, result_check=services.safety)  # the delivery checks every result
    services.jobs.add_listener(bot.audit.on_job_event)
    services.safety.add_listener(bot.audit.on_safety_event)
    if bot.observability is not None:
        bot.observability.connect()  # job events, server health, websocket reconnects
    return bot


async def serve(settings: Settings, *, sync: bool = False, stop: asyncio.Event | None = None) -> int:
    """Run the bot until ``stop`` is set (or SIGTERM/SIGINT), then close everything. Returns the exit status."""
    if not settings.discord_token:
        log.error("DISCORD_TOKEN is not set")
        return 2
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    status = 0
    try:
        async with aiohttp.ClientSession() as session:
            bot = await build(settings, session, sync=sync)
            try:
                await bot.start_observability()
            except OSError as exc:
                port = settings.metrics_address[1] if settings.metrics_address else 0
                reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
                log.error("METRICS_ADDRESS: cannot listen on port %d (%s)", port, reason.lower())
                await bot.close_services()
                return 2
            diagnostics = Diagnostics(bot.diagnostic_sources)  # SIGUSR1 -> one line of counts (bot/observability/diagnostics.py)
            diagnostics.install(loop)
            bot_task = asyncio.create_task(bot.start(settings.discord_token), name="discord-bot")
            stop_task = asyncio.create_task(stop.wait(), name="stop-signal")
            try:
                await asyncio.wait({bot_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_task.cancel()
                if not bot_task.done():
                    log.info("Shutting down")
                await bot.close()
                diagnostics.uninstall()
            try:
                await bot_task
            except discord.LoginFailure:
                log.error("Discord refused the bot token: check DISCORD_TOKEN (Developer Portal, Bot tab)")
                status = 1
            except discord.PrivilegedIntentsRequired:
                log.error("Discord says a privileged intent is needed; this bot should need none")
                status = 1
            except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
                log.error("The Discord connection failed: %s", type(exc).__name__)
                status = 1
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return status


def run_bot(settings: Settings, sync: bool = False) -> int:
    """Entry point of ``python -m bot run``: run until SIGTERM/SIGINT, close gracefully."""
    return asyncio.run(serve(settings, sync=sync))
