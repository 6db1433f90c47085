"""The black-box world: the bot as a real process between two stand-ins, and what a member sees.

Nothing of the bot is imported here or in the tests (a test checks it): the bot is
``python -m bot run`` (:class:`~standins.bot_process.BotProcess`) logged into the Discord
stand-in, which runs in the test's process; the ComfyUI test server runs in a third process and
is steered through its test control (:class:`~standins.comfy_server.control.ComfyControl`).
What is checked is what a member or an operator can see: the status message, the channel,
what ComfyUI ran, and the job store file (only through :func:`job_store_report`).
"""

from __future__ import annotations

import inspect
import io
import re
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from standins.bot_process import REPO_ROOT, BotProcess
from standins.comfy_server.control import ComfyControl
from standins.comfy_server.fixtures import ServerProcess
from standins.discord_server import DiscordStandIn, InteractionRecord, Member, message_text
from standins.wait import wait_until

VIDEO_SUFFIXES = (".gif", ".mp4", ".webp", ".webm")  # the result; the poster frame is a PNG
ENDED_WORDS = re.compile(r"\b(failed|stopped|cancelled|timed out)\b", re.IGNORECASE)

# The one place that knows the job store: its file in DATA_DIR and that jobs have a state.
JOB_STORE_FILE = "jobs.sqlite3"
FINAL_JOB_STATES = frozenset({"delivered", "failed", "cancelled", "timed_out"})


def job_store_report(data_dir: Path) -> tuple[str, list[str]]:
    """(``PRAGMA integrity_check``'s answer, the states of jobs that have not ended).

    Opened read-only with the standard library; the only SQL in the suite, so a new schema
    touches only this function.
    """
    path = data_dir / JOB_STORE_FILE
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0) as db:
        integrity = "; ".join(str(row[0]) for row in db.execute("PRAGMA integrity_check"))
        states = [str(row[0]) for row in db.execute("SELECT state FROM jobs")]
    db.close()
    return integrity, [s for s in states if s not in FINAL_JOB_STATES]


def png(colour: tuple[int, int, int]) -> bytes:
    """A small PNG; every test uses its own colour, so no two jobs share an input."""
    image = Image.new("RGB", (96, 64), (20, 20, 200))
    image.paste(Image.new("RGB", (48, 64), colour), (0, 0))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def videos(message: dict[str, Any] | None) -> list[dict[str, Any]]:
    if message is None:
        return []
    return [a for a in message.get("attachments") or [] if str(a.get("filename", "")).lower().endswith(VIDEO_SUFFIXES)]


def button_labels(message: dict[str, Any]) -> list[str]:
    return [str(c.get("label") or "") for row in message.get("components") or [] for c in row.get("components") or []]


def outcome_of(message: dict[str, Any] | None) -> str:
    """What a status message shows: ``video``, ``failure`` (a notice saying the job ended, no
    Cancel button), or ``pending`` (in line, queued, running, posting... or gone)."""
    if message is None:
        return "pending"
    if videos(message):
        return "video"
    if ENDED_WORDS.search(message_text(message)) and "Cancel" not in button_labels(message):
        return "failure"
    return "pending"


@dataclass
class Job:
    """One /animate a member ran, seen from Discord."""

    member: Member
    record: InteractionRecord
    must_deliver: bool  # False: exactly one of a video and a clear failure

    @property
    def status_id(self) -> int:
        assert self.record.original is not None, "the interaction was never answered"
        return int(self.record.original["id"])


@dataclass
class World:
    """A Discord stand-in, a ComfyUI test server process and the bot processes run against them."""

    discord: DiscordStandIn
    comfy: ServerProcess
    control: ComfyControl
    session: aiohttp.ClientSession
    tmp: Path
    env: dict[str, str] = field(default_factory=dict)
    bots: list[BotProcess] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.tmp / "data"

    @property
    def bot(self) -> BotProcess:
        return self.bots[-1]

    def log(self) -> str:
        return self.bots[-1].log() if self.bots else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    # -- the bot

    async def start_bot(self, **env: str) -> BotProcess:
        """Start ``python -m bot run`` on this world's DATA_DIR and wait until it is logged in."""
        settings = {
            "DISCORD_TOKEN": self.discord.token,
            "COMFYUI_URLS": f"main={self.comfy.url}",
            "DATA_DIR": str(self.data_dir),
            "WORKFLOWS_DIR": str(REPO_ROOT / "workflows"),
            "DEV_GUILD_ID": str(self.discord.guild.id),
            "LOG_LEVEL": "INFO",
            "COMFYUI_TIMEOUT": "10",
            **self.env,
            **env,
        }
        self.env.update(env)  # a restarted bot keeps the same settings
        bot = BotProcess(self.discord.api_base, self.discord.gateway_url, settings, self.tmp / "bot.log")
        self.bots.append(bot)
        self.discord.ready.clear()
        await bot.start()
        await wait_until(lambda: self.discord.ready.is_set() or not bot.running, timeout=20,
                         what="the bot process to log in to the Discord stand-in", describe=self.log_tail)
        assert bot.running, f"the bot exited ({bot.process.returncode if bot.process else '?'}):\n{self.log_tail()}"
        return bot

    async def restart(self, *, while_down: Callable[[], Awaitable[None] | None] | None = None,
                      shown: str = "pending") -> BotProcess:
        """SIGKILL the bot, check each status message showed ``shown`` at that moment (by default:
        no job had ended, so whatever the member gets next comes from the restarted bot), run
        ``while_down`` (e.g. release a held request into the void), then start the bot again on the
        same DATA_DIR with the same settings."""
        await self.bot.kill()  # returns once the process is gone: nothing of it runs any more
        at_kill = {j.member.username: outcome_of(self.status(j)) for j in self.jobs}
        assert set(at_kill.values()) == {shown}, f"status messages at the kill: {at_kill}"
        if while_down is not None:
            result = while_down()
            if inspect.isawaitable(result):
                await result
        return await self.start_bot()

    # -- a member

    async def animate(self, member: Member | None = None, *, must_deliver: bool, colour: tuple[int, int, int] = (200, 40, 40),
                      steps: int = 2, frames: int = 2) -> Job:
        """``/animate`` with a fresh image; returns once the bot deferred (the status message exists).
        ``must_deliver``: the case ends with this member's video (else: a video or a clear failure)."""
        record = await self.discord.slash(None, None, member, "animate", options={"steps": steps, "frames": frames},
                                          attachments={"image": ("photo.png", png(colour), "image/png")})
        await record.wait_ack(timeout=5)
        assert record.ack_type == 5, f"/animate was not accepted: {record.acks} {record.followups}"
        job = Job(member or self.discord.user, record, must_deliver)
        self.jobs.append(job)
        return job

    def status(self, job: Job) -> dict[str, Any] | None:
        """The job's status message as it is now (None once deleted)."""
        return self.discord.messages.get(job.status_id)

    async def wait_status(self, job: Job, pattern: str, timeout: float = 10.0) -> str:
        """Wait until the status message's text matches ``pattern`` (a regular expression)."""
        def shown() -> str:
            message = self.status(job)
            text = message_text(message) if message else ""
            return text if re.search(pattern, text) else ""

        return await wait_until(shown, timeout=timeout, what=f"the status message to show {pattern!r}",
                                describe=lambda: (self.status(job) or {}).get("content"))

    # -- the checks every case makes

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until every job's status message is final and the job store has no unfinished job,
        then SIGKILL the bot (so nothing changes any more) and check the store's integrity."""
        await wait_until(lambda: all(outcome_of(self.status(j)) != "pending" for j in self.jobs), timeout=timeout,
                         what="every status message to reach a final state",
                         describe=lambda: [(self.status(j) or {}).get("content") for j in self.jobs]
                         + [self.log_tail(15)])
        await wait_until(lambda: not job_store_report(self.data_dir)[1], timeout=10.0,
                         what="every job in the store to end", describe=lambda: job_store_report(self.data_dir))
        await self.bot.kill()
        integrity, unfinished = job_store_report(self.data_dir)
        assert integrity == "ok", integrity
        assert not unfinished, unfinished

    def videos_for(self, member: Member) -> list[dict[str, Any]]:
        """Messages in the channel carrying a video that mention ``member`` (the result for them)."""
        return [m for m in self.discord.channel_messages() if videos(m) and f"<@{member.id}>" in (m.get("content") or "")]

    async def comfy_finished(self, prompt_id: str) -> bool:
        """Whether ComfyUI has a history entry for the prompt (it ran to its end)."""
        async with self.session.get(f"{self.comfy.url}/history/{prompt_id}") as resp:
            return prompt_id in await resp.json()

    async def wait_until_finished_on_comfy(self, prompt_id: str, timeout: float = 10.0) -> None:
        await wait_until(lambda: self.comfy_finished(prompt_id), timeout=timeout,
                         what=f"ComfyUI to finish prompt {prompt_id}")

    async def check(self) -> dict[str, str]:
        """The case's end: each member exactly one video (a job that must deliver) or exactly one
        of a video and a clear failure; each prompt ComfyUI ran at most once, no more prompts
        than jobs; no job unfinished; the store intact. Returns each job's outcome by member."""
        await self.settle()
        outcomes: dict[str, str] = {}
        for job in self.jobs:
            shown = outcome_of(self.status(job))
            got = self.videos_for(job.member)
            where = (f"{job.member.username}: status {(self.status(job) or {}).get('content')!r}, "
                     f"{len(got)} video message(s)\n{self.log_tail()}")
            if got or job.must_deliver:
                assert len(got) == 1 and len(videos(got[0])) == 1 and shown != "failure", where
                outcomes[job.member.username] = "video"
            else:
                assert shown == "failure", where
                outcomes[job.member.username] = "failure"
        everything = [m for m in self.discord.channel_messages() if videos(m)]
        assert len(everything) == sum(o == "video" for o in outcomes.values()), everything
        runs = await self.control.runs()
        assert all(count == 1 for count in runs.values()), f"a prompt ran more than once: {runs}"
        assert len(runs) <= len(self.jobs), f"{len(runs)} prompts ran for {len(self.jobs)} job(s): {runs}"
        assert len(runs) >= len(everything), f"{len(everything)} videos from {len(runs)} prompt(s)"
        return outcomes
