"""Pure rendering of status messages, results, /queue and /history (no Discord)."""

from __future__ import annotations

from bot.jobs.models import Job, JobState
from bot.jobs.progress import ProgressUpdate
from bot.discord.buttons import custom_id, parse_custom_id
from bot.discord.status import (
    QueueLine,
    ServerLoad,
    clamp_motion,
    ended_details,
    ended_notice,
    format_duration,
    history_text,
    progress_bar,
    queue_text,
    render_update,
    result_embed,
    wait_words,
)


def job(**fields: object) -> Job:
    values: dict[str, object] = dict(id="abcDEF1234", user_id=7, channel_id=2, guild_id=1, workflow="svd",
                                     options={"seed": 42, "motion": 127, "cfg": 2.5, "format": "gif"})
    values.update(fields)
    return Job(**values)  # type: ignore[arg-type]


def test_running_shows_bar_step_percent_elapsed_and_eta() -> None:
    update = ProgressUpdate(job_id="j", phase="running", step=7, steps=20, elapsed=12.4, eta=22.0)
    status = render_update(update)
    assert "step 7/20" in status.content and "35%" in status.content
    assert "`" + "█" * 7 + "░" * 13 + "`" in status.content
    assert "0:12 elapsed" in status.content and "~0:22 left" in status.content
    assert status.cancellable


def test_waiting_shows_position_and_delivering_is_not_cancellable() -> None:
    assert render_update(ProgressUpdate(job_id="j", phase="waiting", position=3)).content == "⏳ Waiting: #3 in line"
    assert render_update(ProgressUpdate(job_id="j", phase="waiting", position=1)).content == "⏳ Next in line"
    assert not render_update(ProgressUpdate(job_id="j", phase="delivering")).cancellable


def test_bar_and_durations_at_the_edges() -> None:
    assert progress_bar(None, 4) == "░░░░" and progress_bar(1.7, 4) == "████"
    assert format_duration(None) == "?" and format_duration(65) == "1:05" and format_duration(3723) == "1:02:03"


def test_result_embed_lists_options_with_the_seed_first_among_known_ones() -> None:
    embed = result_embed(job(), member_options=["seed", "motion", "cfg", "format"], poster_name="poster.png")
    names = [f["name"] for f in embed["fields"]]
    assert names == ["motion", "seed", "cfg", "format"]
    assert {"name": "seed", "value": "42", "inline": True} in embed["fields"]
    assert embed["image"]["url"] == "attachment://poster.png" and "abcDEF1234" in embed["footer"]["text"]


def test_endings_and_motion_clamp() -> None:
    assert ended_notice(job(state=JobState.CANCELLED, error="Cancelled.")) == "🚫 Cancelled."
    assert ended_details(job(state=JobState.CANCELLED)) is None
    assert ended_details(job(state=JobState.FAILED, error="Out of memory.")) == "Out of memory."
    assert clamp_motion(230, 40, 1, 255) == 255 and clamp_motion(20, -40, 1, 255) == 1


def test_custom_ids_round_trip() -> None:
    assert parse_custom_id(custom_id("more", "abc-_123")) == ("more", "abc-_123")
    assert parse_custom_id("animate:explode:abc") is None


def test_queue_and_history_text() -> None:
    text = queue_text([QueueLine("r", 5, None, server="gpu-1", step=3, steps=10)],
                      [QueueLine("a", 6, 1), QueueLine("b", 7, 2)],
                      [ServerLoad("gpu-1", True, 1, 2, 1), ServerLoad("old", False, 0, 2, 0)], viewer_id=7)
    assert "▶️ <@5> on gpu-1 · step 3/10" in text and "**#2 <@7> ← you**" in text and "#1 <@6>" in text
    assert "🔴 down old" in text and "You are #2 in line." in text
    delivered = job(state=JobState.DELIVERED, delivered_message_id=99)
    failed = job(id="zzz", state=JobState.FAILED, error="The server broke.")
    lines = history_text([delivered, failed]).splitlines()
    assert lines[0].endswith("[result](https://discord.com/channels/1/2/99)")
    assert "failed" in lines[1] and "The server broke." in lines[1]
    assert "no animations yet" in history_text([])


def test_a_waiting_or_queued_status_shows_the_jobs_ahead_and_the_wait() -> None:
    def shown(**fields: object) -> str:
        return render_update(ProgressUpdate(job_id="j", **fields)).content  # type: ignore[arg-type]

    assert shown(phase="waiting", position=3, ahead=4, wait=130.0) == "⏳ Waiting: #3 in line · 4 jobs ahead · starts in about 2 min"
    assert shown(phase="waiting", position=1, ahead=1, wait=None) == "⏳ Next in line · 1 job ahead · estimating..."
    assert shown(phase="queued", ahead=1, wait=23.0) == "📥 Queued on the image server · 1 job ahead · starts in about 25 s"
    assert shown(phase="queued", ahead=0, wait=0.0) == "📥 Queued on the image server · starts in a moment"
    assert shown(phase="queued") == "📥 Queued on the image server…"  # no estimate attached (the shell)
    assert wait_words(None, 30.0) is None and wait_words(2, 7.2) == "2 jobs ahead · starts in about 7 s"


def test_queue_shows_the_wait_of_the_viewer_s_own_jobs() -> None:
    text = queue_text([QueueLine("q", 7, None, server="gpu-1", started=False, wait="1 job ahead · starts in about 40 s")],
                      [QueueLine("a", 6, 1), QueueLine("b", 7, 2, wait="2 jobs ahead · estimating...")],
                      [], viewer_id=7)
    assert "**📥 queued <@7> on gpu-1 · 1 job ahead · starts in about 40 s ← you**" in text
    assert "**#2 <@7> · 2 jobs ahead · estimating... ← you**" in text and "#1 <@6>\n" in text
