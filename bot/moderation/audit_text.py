"""One-line texts for the audit-log channel, and the audit records of job events.

:func:`render` turns any :class:`bot.storage.AuditRecord` (job event or moderation action)
into a single line under Discord's 2000-character limit. Only known detail keys are
shown, every free text is shortened, and anything that looks like a URL (other than a
Discord message link) or a token is removed, so a backend address or a secret that
slipped into a record never reaches the channel. Post the line with mentions disabled
(``allowed_mentions=AllowedMentions.none()``): it names members with ``<@id>``.

:func:`job_record` builds the record of a job event from a :class:`bot.jobs.models.Job`
with only the safe fields (never ``error_detail``, server, prompt id or the interaction token).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from bot.jobs.models import Job
from bot.moderation import messages
from bot.moderation.actions import Actions
from bot.storage import AuditRecord

__all__ = [
    "JobEvents",
    "SafetyActions",
    "MAX_LINE",
    "render",
    "job_record",
    "message_link",
    "scrub",
]

#: Longest line rendered (Discord allows 2000 characters per message).
MAX_LINE: Final = 1900
_MAX_REASON = 300
_MAX_OPTIONS = 300
_MAX_OPTION_VALUE = 40


class JobEvents:
    """Audit action names of job events (written by the job service)."""

    QUEUED = "job.queued"
    DELIVERED = "job.delivered"
    FAILED = "job.failed"
    TIMED_OUT = "job.timed_out"
    CANCELLED = "job.cancelled"
    DELETED = "job.deleted"


class SafetyActions:
    """Audit action names of the content-safety check (issue 16). ``refused`` and ``withheld`` carry
    the member, channel, rule, mode, level and labels with scores; ``released`` and ``deleted`` the
    moderator's decision on a withheld result."""

    REFUSED = "safety.refused"
    WITHHELD = "safety.withheld"
    RELEASED = "safety.released"
    DELETED = "safety.deleted"


_MODE_WORDS: Final = {"strict": "strict", "standard": "standard", "off": "off (no detection)"}
_RULE_WORDS: Final = {
    "strict": "explicit images are not allowed on this server",
    "ordinary_channel": "explicit only in age-restricted channels",
    "direct_message": "always strict in direct messages",
    "others_image": "always strict on another member's image",
    "unchecked": "could not be checked",
    "unavailable": "the detector is not working",
}

_DISCORD_LINK = re.compile(r"^https://(?:ptb\.|canary\.)?discord(?:app)?\.com/channels/(?:\d+|@me)/\d+/\d+$")
_URL = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.)\S+", re.IGNORECASE)
_DISCORD_TOKEN = re.compile(r"[\w-]{23,28}\.[\w-]{6,7}\.[\w-]{27,}")
_SECRET_PAIR = re.compile(r"\b(token|password|passwd|secret|api[_-]?key|authorization|bearer)\b\s*[:=]?\s*\S+", re.IGNORECASE)
_LONG_BLOB = re.compile(r"[A-Za-z0-9+/_=-]{40,}")


def scrub(text: str, *, limit: int = _MAX_REASON) -> str:
    """Free text made safe for the audit channel: one line, no URLs, no secrets, no mass mentions."""
    text = _URL.sub("[link removed]", text)
    text = _DISCORD_TOKEN.sub("[redacted]", text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = _LONG_BLOB.sub("[redacted]", text)
    return messages.clean_free_text(text, limit=limit) or ""


def message_link(guild_id: int | None, channel_id: int, message_id: int) -> str:
    """The jump link of a Discord message (``@me`` for direct messages)."""
    return f"https://discord.com/channels/{guild_id if guild_id else '@me'}/{int(channel_id)}/{int(message_id)}"


def _safe_options(options: Any) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        return {}
    return {
        str(k): v for k, v in options.items() if v is not None and isinstance(v, (str, int, float, bool))
    }


def job_record(
    job: Job,
    action: str,
    *,
    at: float,
    actor_id: int | None = None,
    message_id: int | None = None,
    reason: str | None = None,
) -> AuditRecord:
    """The audit record of a job event, with only fields safe to show.

    ``actor_id``: who caused the event (the owner for ``queued``, the moderator who cancelled
    or deleted); defaults to the job's owner. ``message_id``: the delivered message
    (defaults to ``job.delivered_message_id``). ``reason``: member-facing failure reason
    (defaults to ``job.error``; ``error_detail`` is never recorded here).
    """
    details: dict[str, Any] = {"user_id": job.user_id, "channel_id": job.channel_id, "workflow": job.workflow}
    options = _safe_options(job.options)
    if options:
        details["options"] = options
    if job.parent_job_id:
        details["parent_job_id"] = job.parent_job_id
    delivered = message_id if message_id is not None else job.delivered_message_id
    if delivered is not None:
        details["message_id"] = delivered
    why = reason if reason is not None else job.error
    if why and action in (JobEvents.FAILED, JobEvents.TIMED_OUT, JobEvents.CANCELLED):
        details["reason"] = why
    return AuditRecord(
        guild_id=job.guild_id,
        at=at,
        actor_id=job.user_id if actor_id is None else actor_id,
        action=action,
        job_id=job.id,
        details=details,
    )


# --------------------------------------------------------------------------- rendering


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _user(value: Any) -> str:
    number = _int(value)
    return messages.user_mention(number) if number else "someone"


def _job_id(record: AuditRecord) -> str:
    return f"`{scrub(record.job_id or '?', limit=40).replace('`', '')}`"


def _options_text(details: Mapping[str, Any]) -> str:
    parts = [f"{scrub(str(k), limit=30)}={scrub(str(v), limit=_MAX_OPTION_VALUE)}"
             for k, v in _safe_options(details.get("options")).items()]
    text = ", ".join(parts)
    if len(text) > _MAX_OPTIONS:
        text = text[: _MAX_OPTIONS - 1] + "…"
    workflow = scrub(str(details["workflow"]), limit=60) if details.get("workflow") else ""
    inner = "; ".join(p for p in (workflow, text) if p)
    return f" ({inner})" if inner else ""


def _link(record: AuditRecord, details: Mapping[str, Any]) -> str | None:
    link = details.get("link")
    if isinstance(link, str) and _DISCORD_LINK.match(link):
        return link
    message_id, channel_id = _int(details.get("message_id")), _int(details.get("channel_id"))
    if message_id and channel_id:
        return message_link(record.guild_id, channel_id, message_id)
    return None


def _render_job(record: AuditRecord, details: Mapping[str, Any]) -> str:
    owner = _user(details.get("user_id", record.actor_id))
    job = f"job {_job_id(record)} of {owner}"
    reason = scrub(str(details["reason"])) if details.get("reason") else ""
    action = record.action
    if action in (JobEvents.QUEUED, "job.created"):
        where = f" in {messages.channel_mention(cid)}" if (cid := _int(details.get("channel_id"))) else ""
        return f"🕒 {_user(record.actor_id)} queued job {_job_id(record)}{where}{_options_text(details)}"
    if action == JobEvents.DELIVERED:
        link = _link(record, details)
        return f"✅ {job} delivered" + (f": {link}" if link else "")
    if action == JobEvents.FAILED:
        return f"❌ {job} failed" + (f": {reason}" if reason else "")
    if action == JobEvents.TIMED_OUT:
        return f"⏱️ {job} timed out" + (f": {reason}" if reason else "")
    if action == JobEvents.CANCELLED:
        return f"🚫 {job} cancelled by {_user(record.actor_id)}" + (f": {reason}" if reason else "")
    if action == JobEvents.DELETED:
        return f"🗑️ {job} deleted by {_user(record.actor_id)}"
    return f"{job}: {scrub(action, limit=60)}"


def _labels_text(details: Mapping[str, Any]) -> str:
    """``explicit: FEMALE_BREAST_EXPOSED 0.90, BELLY_EXPOSED 0.45`` from a safety record's details."""
    level = scrub(str(details.get("level") or "not checked"), limit=20)
    pairs = []
    for item in details.get("labels") or []:
        try:
            label, score = item
            pairs.append(f"{scrub(str(label), limit=40)} {float(score):.2f}")
        except (TypeError, ValueError):
            continue
    return level + (": " + ", ".join(pairs[:10]) if pairs else "")


def _render_safety(record: AuditRecord, details: Mapping[str, Any]) -> str:
    owner = _user(details.get("user_id", record.actor_id))
    where = f" in {messages.channel_mention(cid)}" if (cid := _int(details.get("channel_id"))) else ""
    mode = _MODE_WORDS.get(str(details.get("mode")), scrub(str(details.get("mode") or "?"), limit=20))
    rule = _RULE_WORDS.get(str(details.get("rule")), scrub(str(details.get("rule") or "?"), limit=40))
    if record.action == SafetyActions.REFUSED:
        return f"🛡️ input of {owner} refused{where} ({mode} mode: {rule}): {_labels_text(details)}"
    if record.action == SafetyActions.WITHHELD:
        return (f"🛡️ result of job {_job_id(record)} of {owner} withheld{where} ({mode} mode: {rule}): "
                f"{_labels_text(details)}. Release or Delete it below (or with /mod withheld)")
    if record.action == SafetyActions.RELEASED:
        link = _link(record, details)
        return f"🔓 {_user(record.actor_id)} released the withheld result of job {_job_id(record)} of {owner}" + (
            f": {link}" if link else "")
    if record.action == SafetyActions.DELETED:
        return f"🗑️ {_user(record.actor_id)} deleted the withheld result of job {_job_id(record)} of {owner}"
    return f"{_user(record.actor_id)}: {scrub(record.action, limit=60)}"


def _show(name: str, value: Any) -> str:
    if name in ("allowed_channel_ids", "audit_channel_id"):
        ids = value if isinstance(value, list) else ([] if value is None else [value])
        shown = ", ".join(messages.channel_mention(i) for i in ids if _int(i))
        return shown or ("all channels" if name == "allowed_channel_ids" else "off")
    if name in ("required_role_id", "exempt_role_ids", "moderator_role_ids"):
        ids = value if isinstance(value, list) else ([] if value is None else [value])
        return ", ".join(messages.role_mention(i) for i in ids if _int(i)) or "none"
    if name == "cooldown_seconds":
        number = float(value or 0)
        return messages.format_duration(number, exact=True) if number > 0 else "none"
    if name in ("daily_quota", "guild_daily_cap"):
        return "unlimited" if value is None else str(_int(value))
    if name == "max_in_flight":
        return "bot default" if value is None else str(_int(value))
    if name == "allow_animate_others":
        return "allowed" if value else "own images only"
    if name == "safety_mode":
        return _MODE_WORDS.get(str(value), scrub(str(value), limit=20))
    if name in ("safety_suggestive", "safety_explicit"):
        return "default" if value is None else f"{float(value):.2f}"
    if name == "option_defaults":
        pairs = value.items() if isinstance(value, Mapping) else ()
        shown = ", ".join(f"{scrub(str(k), limit=20)} {scrub(str(v), limit=20)}" for k, v in pairs)
        return shown or "the workflows' own"
    if name in ("max_frames", "max_steps"):
        return "none" if value is None else str(_int(value))
    if name == "allowed_formats":
        formats = value if isinstance(value, list) else []
        return "all" if value is None else (", ".join(scrub(str(f), limit=20) for f in formats) or "none")
    return scrub(str(value), limit=80)


_LABELS: Final = {
    "allowed_channel_ids": "channels",
    "required_role_id": "required role",
    "cooldown_seconds": "cooldown",
    "daily_quota": "daily quota",
    "max_in_flight": "jobs in flight",
    "guild_daily_cap": "server daily cap",
    "exempt_role_ids": "exempt roles",
    "moderator_role_ids": "moderator roles",
    "allow_animate_others": "animate others' images",
    "audit_channel_id": "audit channel",
    "safety_mode": "safety mode",
    "safety_suggestive": "suggestive threshold",
    "safety_explicit": "explicit threshold",
    "option_defaults": "option defaults",
    "max_frames": "max frames",
    "max_steps": "max steps",
    "allowed_formats": "formats",
    "max_extensions": "max extensions",
}


def _render_settings(record: AuditRecord, details: Mapping[str, Any]) -> str:
    changes = []
    for name, label in _LABELS.items():
        change = details.get(name)
        if isinstance(change, Mapping) and "after" in change:
            changes.append(f"{label} {_show(name, change.get('before'))} → {_show(name, change.get('after'))}")
    return f"⚙️ {_user(record.actor_id)} changed " + ("; ".join(changes) if changes else "settings")


def _render(record: AuditRecord) -> str:
    details: Mapping[str, Any] = record.details if isinstance(record.details, Mapping) else {}
    action = record.action
    actor = _user(record.actor_id)
    if action.startswith("safety."):
        return _render_safety(record, details)
    if action.startswith("job.") or (record.job_id and not action.startswith(("settings.", "guild.", "member."))):
        return _render_job(record, details)
    if action.startswith("settings."):
        return _render_settings(record, details)
    if action == Actions.PAUSED:
        message = details.get("pause_message")
        text = message.get("after") if isinstance(message, Mapping) else message
        return f"⏸️ {actor} paused generation" + (f": {scrub(str(text))}" if text else "")
    if action == Actions.RESUMED:
        return f"▶️ {actor} resumed generation"
    if action == Actions.BANNED:
        reason = details.get("reason")
        return f"🔨 {actor} banned {_user(details.get('user_id'))} from the bot" + (
            f": {scrub(str(reason))}" if reason else ""
        )
    if action == Actions.UNBANNED:
        return f"🕊️ {actor} unbanned {_user(details.get('user_id'))}"
    if action == Actions.QUEUE_CLEARED:
        count = _int(details.get("count"))
        return f"🧹 {actor} cleared the waiting jobs" + (f" ({count})" if count is not None else "")
    return f"{actor}: {scrub(action, limit=60)}"


def render(record: AuditRecord) -> str:
    """One line for the audit-log channel: ``<t:…:f>`` then what happened (< 2000 characters)."""
    line = f"<t:{int(record.at)}:f> {_render(record)}"
    if len(line) > MAX_LINE:
        line = line[: MAX_LINE - 1] + "…"
    return line
