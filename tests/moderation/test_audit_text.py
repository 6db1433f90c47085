"""Audit-channel lines: readable, short, and never leaking backend addresses or secrets."""

from __future__ import annotations

from pathlib import Path

from standins.fake_clock import FakeClock
from bot.jobs.models import Job
from bot.moderation import actions
from bot.moderation.audit_text import JobEvents, job_record, render
from bot.storage import AuditRecord, Storage

from .conftest import GUILD, admin

AT = 1_750_000_000.0


def make_job(**fields: object) -> Job:
    base: dict[str, object] = dict(
        id="abc123", user_id=1, channel_id=10, workflow="svd_img2vid", guild_id=GUILD,
        options={"frames": 14, "seed": 3, "motion": None, "nested": {"x": 1}},
        interaction_token="SECRET-INTERACTION-TOKEN", server="gpu-box", prompt_id="p-1",
        error_detail="ComfyServerError at http://10.0.0.5:8188/prompt: 500",
    )
    base.update(fields)
    return Job(**base)  # type: ignore[arg-type]


def test_job_events_render_who_what_and_outcome() -> None:
    job = make_job()
    queued = render(job_record(job, JobEvents.QUEUED, at=AT))
    assert queued.startswith(f"<t:{int(AT)}:f> ")
    assert "<@1> queued job `abc123` in <#10>" in queued and "frames=14" in queued and "seed=3" in queued
    assert "motion" not in queued and "nested" not in queued

    delivered = render(job_record(make_job(delivered_message_id=555), JobEvents.DELIVERED, at=AT))
    assert f"delivered: https://discord.com/channels/{GUILD}/10/555" in delivered

    failed = render(job_record(make_job(error="The server ran out of memory."), JobEvents.FAILED, at=AT))
    assert "failed: The server ran out of memory." in failed

    cancelled = render(job_record(job, JobEvents.CANCELLED, at=AT, actor_id=800))
    assert "job `abc123` of <@1> cancelled by <@800>" in cancelled
    assert "deleted by <@800>" in render(job_record(job, JobEvents.DELETED, at=AT, actor_id=800))


def test_job_record_keeps_only_safe_fields() -> None:
    record = job_record(make_job(error="failed"), JobEvents.FAILED, at=AT)
    text = repr(record.details)
    for secret in ("SECRET-INTERACTION-TOKEN", "gpu-box", "p-1", "10.0.0.5"):
        assert secret not in text


def test_no_backend_urls_or_tokens_even_if_a_record_carries_them() -> None:
    bot_token = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456"
    record = AuditRecord(
        guild_id=GUILD, at=AT, actor_id=None, action=JobEvents.FAILED, job_id="j1",
        details={"user_id": 1, "reason": f"POST http://127.0.0.1:8188/api/prompt failed token={bot_token} "
                                          f"Bearer sk-live-123 and {bot_token}",
                 "link": "http://comfy.internal/view?filename=x.mp4"},
    )
    line = render(record)
    for leak in ("127.0.0.1", "8188", "comfy.internal", bot_token, "sk-live-123", "http"):
        assert leak not in line, line
    delivered = AuditRecord(guild_id=GUILD, at=AT, actor_id=1, action=JobEvents.DELIVERED, job_id="j1",
                            details={"user_id": 1, "link": "https://gpu.example/view?x=1"})
    assert "gpu.example" not in render(delivered)


def test_lines_stay_under_discord_limit() -> None:
    record = AuditRecord(
        guild_id=GUILD, at=AT, actor_id=1, action=JobEvents.QUEUED, job_id="j" * 500,
        details={"user_id": 1, "workflow": "w" * 500, "options": {f"k{i}": "v" * 100 for i in range(200)}},
    )
    assert len(render(record)) < 2000
    weird = AuditRecord(guild_id=GUILD, at=AT, actor_id=None, action="x" * 5000, details={"a": "b" * 5000})
    assert len(render(weird)) < 2000


async def test_moderation_actions_render(tmp_path: Path, clock: FakeClock) -> None:
    async with await Storage.open(tmp_path / "j.sqlite3", clock=clock) as store:
        lines = [
            render((await actions.set_channels(store, admin(), [11, 12])).audit),
            render((await actions.set_limits(store, admin(), cooldown=90, daily_quota=5)).audit),
            render((await actions.pause(store, admin(), "GPU upgrade")).audit),
            render((await actions.resume(store, admin())).audit),
            render((await actions.ban(store, admin(), 7, "spam")).audit),
            render((await actions.unban(store, admin(), 7)).audit),
            render((await actions.set_allow_others(store, admin(), True)).audit),
        ]
    assert "<@900> changed channels all channels → <#11>, <#12>" in lines[0]
    assert "cooldown none → 1 min 30 s" in lines[1] and "daily quota unlimited → 5" in lines[1]
    assert "<@900> paused generation: GPU upgrade" in lines[2]
    assert "<@900> resumed generation" in lines[3]
    assert "<@900> banned <@7> from the bot: spam" in lines[4]
    assert "<@900> unbanned <@7>" in lines[5]
    assert "animate others' images own images only → allowed" in lines[6]


def test_safety_records_show_who_where_the_rule_and_the_scores() -> None:
    from bot.moderation.audit_text import SafetyActions

    details = {"user_id": 1, "channel_id": 10, "rule": "ordinary_channel", "mode": "standard", "level": "explicit",
               "labels": [["FEMALE_BREAST_EXPOSED", 0.9], ["BELLY_EXPOSED", 0.451]]}
    refused = render(AuditRecord(guild_id=GUILD, at=AT, actor_id=1, action=SafetyActions.REFUSED, details=details))
    assert refused == (f"<t:{int(AT)}:f> 🛡️ input of <@1> refused in <#10> (standard mode: explicit only in "
                       "age-restricted channels): explicit: FEMALE_BREAST_EXPOSED 0.90, BELLY_EXPOSED 0.45")
    withheld = render(AuditRecord(guild_id=GUILD, at=AT, actor_id=1, action=SafetyActions.WITHHELD, job_id="abc123",
                                  details=details | {"rule": "strict", "mode": "strict"}))
    assert "result of job `abc123` of <@1> withheld in <#10> (strict mode" in withheld and "Release or Delete" in withheld
    unchecked = render(AuditRecord(guild_id=GUILD, at=AT, actor_id=1, action=SafetyActions.REFUSED,
                                   details={"user_id": 1, "rule": "unavailable", "mode": "strict"}))
    assert unchecked.endswith("(strict mode: the detector is not working): not checked")
    link = "https://discord.com/channels/5/10/77"
    released = render(AuditRecord(guild_id=GUILD, at=AT, actor_id=9, action=SafetyActions.RELEASED, job_id="abc123",
                                  details={"user_id": 1, "channel_id": 10, "link": link}))
    assert released.endswith(f"🔓 <@9> released the withheld result of job `abc123` of <@1>: {link}")
    deleted = render(AuditRecord(guild_id=GUILD, at=AT, actor_id=9, action=SafetyActions.DELETED, job_id="abc123",
                                 details={"user_id": 1}))
    assert deleted.endswith("🗑️ <@9> deleted the withheld result of job `abc123` of <@1>")


def test_a_safety_settings_change_names_the_mode_and_thresholds() -> None:
    details = {"safety_mode": {"before": "strict", "after": "off"},
               "safety_explicit": {"before": None, "after": 0.65}}
    line = render(AuditRecord(guild_id=GUILD, at=AT, actor_id=2, action=actions.Actions.SAFETY, details=details))
    assert line.endswith("⚙️ <@2> changed safety mode strict → off (no detection); explicit threshold default → 0.65")
