"""Pure rendering of a job's progress and outcome into what a status message shows.

Everything here takes plain data (:class:`~bot.jobs.progress.ProgressUpdate`,
:class:`~bot.jobs.models.Job`, numbers) and returns strings or embed dictionaries, so it is
tested without Discord: a text progress bar, step k/n, percentage, elapsed time and an
estimate while running; the position in line, the jobs ahead and the estimated wait
(:func:`wait_words`) while waiting; the options used (seed included) on the result; the lines of
``/queue`` and ``/history``. No I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.jobs.estimate import format_wait
from bot.jobs.extend import EXTEND_KEY
from bot.jobs.models import Job, JobState
from bot.jobs.progress import ProgressUpdate
from bot.media.video import FittedVideo
from bot.safety.messages import WITHHELD_DETAIL, WITHHELD_NOTICE

BAR_WIDTH = 20
BAR_FULL, BAR_EMPTY = "█", "░"
EMBED_COLOUR = 0x5865F2
FAILED_COLOUR = 0xED4245
MAX_LINE = 1900  # keep message content under Discord's 2000 characters

# The order options are listed in on the result embed (others follow alphabetically).
OPTION_ORDER: tuple[str, ...] = ("motion", "frames", "fps", "seed", "augmentation", "steps", "cfg", "format", "fit", "loop")


@dataclass(frozen=True)
class StatusText:
    """What a status message shows: its content and whether the Cancel button belongs on it."""

    content: str
    cancellable: bool


def progress_bar(fraction: float | None, width: int = BAR_WIDTH) -> str:
    """A text bar like ``█████░░░░░`` for ``fraction`` in 0..1 (an empty bar when unknown)."""
    if fraction is None or math.isnan(fraction):
        fraction = 0.0
    fraction = min(1.0, max(0.0, fraction))
    filled = int(round(fraction * width))
    return BAR_FULL * filled + BAR_EMPTY * (width - filled)


def format_duration(seconds: float | None) -> str:
    """``0:07``, ``1:05``, ``1:02:03``; ``?`` when unknown."""
    if seconds is None or seconds < 0 or math.isnan(seconds):
        return "?"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def position_text(position: int | None) -> str:
    if position is None:
        return "⏳ Waiting in line…"
    if position <= 1:
        return "⏳ Next in line"
    return f"⏳ Waiting: #{position} in line"


def wait_words(ahead: int | None, wait: float | None) -> str | None:
    """``3 jobs ahead · starts in about 2 min`` (or ``estimating...``); None without an estimate."""
    if ahead is None:
        return None
    count = f"{ahead} job{'' if ahead == 1 else 's'} ahead · " if ahead else ""
    return count + format_wait(wait)


def render_update(update: ProgressUpdate) -> StatusText:
    """The status message for one progress update."""
    phase = update.phase
    waits = wait_words(update.ahead, update.wait)
    if phase == "waiting":
        return StatusText(position_text(update.position) + (f" · {waits}" if waits else ""), cancellable=True)
    if phase == "queued":
        return StatusText(f"📥 Queued on the image server · {waits}" if waits else "📥 Queued on the image server…",
                          cancellable=True)
    if phase == "starting":
        return StatusText("🚀 Starting on the image server…", cancellable=True)
    if phase == "running":
        fraction: float | None = None
        if update.step is not None and update.steps:
            fraction = update.step / update.steps
        elif update.percent is not None:
            fraction = update.percent / 100.0
        parts = []
        if update.step is not None and update.steps:
            parts.append(f"step {update.step}/{update.steps}")
        if fraction is not None:
            parts.append(f"{fraction * 100:.0f}%")
        head = "🎬 Animating" + (" · " + " · ".join(parts) if parts else "")
        tail = [f"{format_duration(update.elapsed)} elapsed"]
        if update.eta is not None:
            tail.append(f"~{format_duration(update.eta)} left")
        return StatusText(f"{head}\n`{progress_bar(fraction)}` " + " · ".join(tail), cancellable=True)
    if phase == "encoding":
        text = "🎞️ Encoding the video…"
        if update.elapsed is not None:
            text += f" ({format_duration(update.elapsed)} elapsed)"
        return StatusText(text, cancellable=True)
    if phase == "delivering":
        return StatusText("📤 Posting the video…", cancellable=False)
    return StatusText(update.message or "Finished.", cancellable=False)


def ended_notice(job: Job) -> str:
    """The one-line notice a status message keeps when a job ended without a result."""
    if job.state is JobState.CANCELLED:
        return f"🚫 {job.error or 'Cancelled.'}"
    if job.state is JobState.TIMED_OUT:
        return "⌛ This animation took too long and was stopped."
    if (job.error_detail or "").startswith(WITHHELD_DETAIL):
        return WITHHELD_NOTICE  # the result was withheld by the safety check (issue 16)
    return "❌ This animation failed."


def ended_public(job: Job) -> str:
    """What the channel is told, mentioning the member, once the private route is gone: the notice
    and the reason, but only the notice for a withheld result (its reason stays private)."""
    notice, details = ended_notice(job), ended_details(job)
    if not details or notice == WITHHELD_NOTICE:
        return notice
    return f"{notice} {details}"


def ended_details(job: Job) -> str | None:
    """The details sent privately to the requester (None for a plain cancel)."""
    if job.state is JobState.CANCELLED:
        return None
    reason = job.error or "Something went wrong on our side. Please try again."
    return reason[:MAX_LINE]


def _ordered(options: Mapping[str, Any]) -> list[tuple[str, Any]]:
    known = [(name, options[name]) for name in OPTION_ORDER if name in options]
    rest = sorted((k, v) for k, v in options.items() if k not in OPTION_ORDER and not k.startswith("_"))
    return known + rest


def format_option(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def result_embed(job: Job, *, member_options: Iterable[str] | None = None, poster_name: str | None = None,
                 note: str | None = None) -> dict[str, Any]:
    """The result embed (as Discord embed data): options used, seed included, and the poster frame."""
    names = set(member_options) if member_options is not None else None
    options = {k: v for k, v in job.options.items() if names is None or k in names}
    fields = [{"name": name[:256], "value": format_option(value)[:1024] or "-", "inline": True}
              for name, value in _ordered(options)][:24]
    embed: dict[str, Any] = {
        "title": "Your animation",
        "description": f"<@{job.user_id}> · workflow `{job.workflow}`" + extension_line(job)
                       + (f"\n{note}" if note else ""),
        "colour": EMBED_COLOUR,
        "fields": fields,
        "footer": {"text": f"Job {job.id}"},
    }
    if poster_name:
        embed["image"] = {"url": f"attachment://{poster_name}"}
    return embed


def extension_line(job: Job) -> str:
    """``\nExtended 2/3 · [first result](link)`` for an extension (its new seed is among the options), else ``""``."""
    plan = job.result_meta.get(EXTEND_KEY)
    if not job.extension_index or not isinstance(plan, dict):
        return ""
    text = f"\nExtended {job.extension_index}/{plan.get('of', job.extension_index)}"
    first = plan.get("first_message")
    if isinstance(first, list) and len(first) == 3 and first[1] and first[2]:
        text += f" · [first result]({message_url(first[0], int(first[1]), int(first[2]))})"
    return text


def file_note(fitted: FittedVideo, limit: int) -> str:
    """``GIF · 14 frames · 1024x576 · 2.3 MB``, and why it was re-encoded when it was."""
    text = f"{fitted.format.upper()} · {fitted.frames} frames · {fitted.width}x{fitted.height} · {human_size(fitted.size)}"
    if fitted.reencoded:
        text += f" (re-encoded to fit this channel's {human_size(limit)} upload limit)"
    return text


def human_size(n: int) -> str:
    """``2.3 MB``, ``850 KB`` (MiB / KiB, as Discord counts its limits)."""
    if n >= 1024 * 1024:
        return f"{n / 1024 / 1024:.1f} MB"
    return f"{max(1, round(n / 1024))} KB"


def clamp_motion(current: int, delta: int, low: int | float | None, high: int | float | None) -> int:
    """``current + delta`` kept within the option's range."""
    value = int(current) + delta
    if low is not None:
        value = max(int(low), value)
    if high is not None:
        value = min(int(high), value)
    return value


@dataclass(frozen=True)
class QueueLine:
    """One job in ``/queue``."""

    job_id: str
    user_id: int
    position: int | None  # None: on a server
    server: str | None = None
    step: int | None = None
    steps: int | None = None
    started: bool = True  # False: still in the server's own queue
    wait: str | None = None  # jobs ahead and the estimated wait (:func:`wait_words`), for the viewer's own jobs


@dataclass(frozen=True)
class ServerLoad:
    """One server's load for ``/queue`` (by name, never a URL)."""

    name: str
    healthy: bool
    in_flight: int
    capacity: int
    queue_remaining: int


def queue_text(running: Sequence[QueueLine], waiting: Sequence[QueueLine], servers: Sequence[ServerLoad],
               viewer_id: int, *, limit: int = 20) -> str:
    """``/queue``: running jobs, the line with positions (the viewer's own in bold, with their wait
    when it is given), each server's load."""
    lines: list[str] = []
    if running:
        lines.append(f"**On the servers ({len(running)})**")
        for item in running[:limit]:
            progress = f" · step {item.step}/{item.steps}" if item.step is not None and item.steps else ""
            where = f" on {item.server}" if item.server else ""
            head = "▶️" if item.started else "📥 queued"
            wait = f" · {item.wait}" if item.wait else ""
            lines.append(_mark(f"{head} <@{item.user_id}>{where}{progress}{wait}", item.user_id == viewer_id))
    if waiting:
        lines.append(f"**Waiting ({len(waiting)})**")
        for item in waiting[:limit]:
            wait = f" · {item.wait}" if item.wait else ""
            lines.append(_mark(f"#{item.position} <@{item.user_id}>{wait}", item.user_id == viewer_id))
        if len(waiting) > limit:
            lines.append(f"…and {len(waiting) - limit} more")
    if not running and not waiting:
        lines.append("The line is empty: a new /animate starts right away.")
    mine = [w.position for w in waiting if w.user_id == viewer_id and w.position is not None]
    if mine:
        lines.append(f"You are #{', #'.join(str(p) for p in mine)} in line.")
    if servers:
        lines.append("**Servers**")
        for s in servers:
            state = "🟢" if s.healthy else "🔴 down"
            lines.append(f"{state} {s.name}: {s.in_flight}/{s.capacity} busy, {s.queue_remaining} in its queue")
    text = "\n".join(lines)
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "…"


def _mark(text: str, mine: bool) -> str:
    return f"**{text} ← you**" if mine else text


_STATE_WORDS = {
    JobState.WAITING: "waiting",
    JobState.SUBMITTED: "queued on a server",
    JobState.RUNNING: "running",
    JobState.DELIVERING: "posting",
    JobState.DELIVERED: "done",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
    JobState.TIMED_OUT: "timed out",
}


def message_url(guild_id: int | None, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id if guild_id else '@me'}/{channel_id}/{message_id}"


def history_text(jobs: Sequence[Job]) -> str:
    """``/history``: the member's recent jobs, with a link to each delivered result."""
    if not jobs:
        return "You have no animations yet. Try /animate with an image."
    lines = []
    for job in jobs:
        words = _STATE_WORDS.get(job.state, job.state.value)
        seed = job.options.get("seed")
        head = f"`{job.id}` {words}" + (f" · seed {seed}" if seed is not None else "")
        if job.state is JobState.DELIVERED and job.delivered_message_id and not job.deleted:
            head += f" · [result]({message_url(job.guild_id, job.channel_id, job.delivered_message_id)})"
        elif job.state is JobState.DELIVERED and job.deleted:
            head += " · deleted"
        elif job.error and job.state in (JobState.FAILED, JobState.TIMED_OUT):
            head += f" · {job.error[:120]}"
        lines.append(head)
    text = "\n".join(lines)
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "…"
