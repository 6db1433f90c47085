"""Which original file an Extend starts from and which clip it joins onto (bot.jobs.extend), for every
kind of result: plain, ping-ponged by VideoHelperSuite, ping-ponged by the bot, and an extension."""

from __future__ import annotations

from pathlib import Path

from bot.jobs.extend import frame_source, join_base, plan_for
from bot.jobs.models import Job, JobState


def job(result: str, **meta: object) -> Job:
    return Job(id="j", user_id=1, channel_id=2, workflow="w", state=JobState.DELIVERED, result_path=result,
               result_meta=dict(meta))


def test_a_plain_result_is_its_own_source_and_base() -> None:
    plain = job("/d/results/a.mp4", boomerang=False)
    assert frame_source(plain) == (Path("/d/results/a.mp4"), False)
    assert join_base(plain) == (Path("/d/results/a.mp4"), False)


def test_a_vhs_boomerang_is_read_as_a_boomerang() -> None:
    vhs = job("/d/results/a.mp4", boomerang=True)
    assert frame_source(vhs) == (Path("/d/results/a.mp4"), True)  # the turning point
    assert join_base(vhs) == (Path("/d/results/a.mp4"), True)


def test_a_boomerang_the_bot_made_is_read_from_its_forward_original() -> None:
    core = job("/d/results/a.boomerang.mp4", boomerang=True, original_path="/d/results/a.mp4")
    assert frame_source(core) == (Path("/d/results/a.mp4"), False)
    assert join_base(core) == (Path("/d/results/a.mp4"), False)


def test_an_extension_starts_from_its_new_clip_and_is_joined_onto_as_a_whole() -> None:
    ext = job("/d/results/e.joined.mp4", boomerang=True, original_path="/d/results/e.mp4",
              segment_path="/d/results/e.mp4", segment_boomerang=False)
    assert frame_source(ext) == (Path("/d/results/e.mp4"), False)  # the original, not the re-encoded join
    assert join_base(ext) == (Path("/d/results/e.joined.mp4"), True)


def test_the_plan_names_the_base_the_number_and_the_first_result() -> None:
    first = job("/d/results/a.mp4")
    first.delivered_message_id, first.guild_id = 99, 7
    assert plan_for(first, None, 3) == {"base": "/d/results/a.mp4", "base_boomerang": False, "index": 1, "of": 3,
                                        "first_job_id": "j", "first_message": [7, 2, 99]}
    second = job("/d/results/e.joined.mp4", segment_path="/d/results/e.mp4")
    second.id, second.extension_index, second.chain_root_id = "e", 1, "j"
    first.deleted = True  # a deleted first result is not linked
    plan = plan_for(second, first, 3)
    assert (plan["index"], plan["base"], plan["first_job_id"]) == (2, "/d/results/e.joined.mp4", "j")
    assert "first_message" not in plan
