"""BotMetrics: what each method changes in the exposition, per-bot registries, and safe labels."""

from __future__ import annotations

import math

import pytest

from bot.errors import BackendUnavailable, InvalidInput, JobFailed, LimitReached, MissingPermissions, NotAllowed
from bot.jobs.models import JobState
from bot.observability.metrics import (
    JOB_TIME_BUCKETS,
    LEG_BUCKETS,
    LOOP_LAG_BUCKETS,
    BotMetrics,
    RefusalReason,
    label_value,
    refusal_reason_for,
)
from bot.safety.gate import SafetyRefused
from bot.safety.messages import Rule
from bot.settings import load_settings

from .helpers import samples, value

Key = tuple[str, tuple[tuple[str, str], ...]]


def changes(before: dict[Key, float], after: dict[Key, float]) -> dict[Key, float]:
    """Samples that are new or changed, with their new value (NaN compares equal to NaN here)."""
    def same(a: float | None, b: float) -> bool:
        return a is not None and (a == b or (math.isnan(a) and math.isnan(b)))
    return {k: v for k, v in after.items() if not same(before.get(k), v) and not k[0].endswith("_created")}


def key(name: str, **labels: str) -> Key:
    return name, tuple(sorted(labels.items()))


def test_each_method_changes_exactly_its_own_samples() -> None:
    m = BotMetrics(server_names=["gpu-a", "gpu-b"], workflows=["svd"], process_metrics=False)
    before = samples(m.exposition())

    m.job_ended(JobState.DELIVERED, "svd", waited_s=3.0, ran_s=45.0, total_s=50.0)
    m.job_ended("cancelled", "svd", waited_s=1.5)
    m.refused(RefusalReason.SAFETY)
    m.refused("bad_input")
    m.server_status("gpu-a", up=True, queue_depth=3)
    m.ws_reconnected("gpu-b")
    m.discord_429(route="PATCH /channels/:id/messages/:id", scope="user")
    m.edit_failed()
    m.legs(submit_s=0.2, deliver_s=1.2)
    m.job_counts({JobState.WAITING: 4, "running": 1})
    m.loop_lag_observed(0.03)

    ns = "animate_bot_"
    got = changes(before, samples(m.exposition()))
    expected: dict[Key, float] = {
        key(ns + "jobs_ended_total", state="delivered", workflow="svd"): 1,
        key(ns + "jobs_ended_total", state="cancelled", workflow="svd"): 1,
        key(ns + "refusals_total", reason="safety"): 1,
        key(ns + "refusals_total", reason="bad_input"): 1,
        key(ns + "server_up", server="gpu-a"): 1,
        key(ns + "server_queue_depth", server="gpu-a"): 3,
        key(ns + "server_ws_reconnects_total", server="gpu-b"): 1,
        key(ns + "discord_rate_limited_total", route="PATCH /channels/:id/messages/:id", scope="user"): 1,
        key(ns + "discord_edit_failures_total"): 1,
        key(ns + "jobs_active", state="waiting"): 4,
        key(ns + "jobs_active", state="running"): 1,
        key(ns + "event_loop_lag_seconds"): 0.03,
        key(ns + "event_loop_lag_count"): 1,
        key(ns + "event_loop_lag_sum"): 0.03,
        key(ns + "submit_seconds_count"): 1,
        key(ns + "submit_seconds_sum"): 0.2,
        key(ns + "deliver_seconds_count"): 1,
        key(ns + "deliver_seconds_sum"): 1.2,
        key(ns + "job_wait_seconds_count", workflow="svd"): 2,
        key(ns + "job_wait_seconds_sum", workflow="svd"): 4.5,
        key(ns + "job_run_seconds_count", workflow="svd"): 1,
        key(ns + "job_run_seconds_sum", workflow="svd"): 45.0,
        key(ns + "job_total_seconds_count", workflow="svd"): 1,
        key(ns + "job_total_seconds_sum", workflow="svd"): 50.0,
    }
    # histogram buckets: every bucket whose bound is at or above an observed value counts it
    def buckets(name: str, bounds: tuple[float, ...], observed: list[float], **labels: str) -> None:
        for bound in (*bounds, math.inf):
            n = sum(1 for v in observed if v <= bound)
            if n:
                le = "+Inf" if bound == math.inf else repr(float(bound))
                expected[key(ns + name + "_bucket", le=le, **labels)] = n

    buckets("job_wait_seconds", JOB_TIME_BUCKETS, [3.0, 1.5], workflow="svd")
    buckets("job_run_seconds", JOB_TIME_BUCKETS, [45.0], workflow="svd")
    buckets("job_total_seconds", JOB_TIME_BUCKETS, [50.0], workflow="svd")
    buckets("submit_seconds", LEG_BUCKETS, [0.2])
    buckets("deliver_seconds", LEG_BUCKETS, [1.2])
    buckets("event_loop_lag", LOOP_LAG_BUCKETS, [0.03])
    assert expected[key(ns + "job_wait_seconds_bucket", le="2.0", workflow="svd")] == 1  # 1.5 only

    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == pytest.approx(v), k


def test_series_exist_from_the_start() -> None:
    m = BotMetrics(server_names=["gpu-a"], workflows=["svd"], process_metrics=False)
    assert value(m, "animate_bot_server_up", server="gpu-a") == 0
    assert math.isnan(value(m, "animate_bot_server_queue_depth", server="gpu-a") or 0.0)
    assert value(m, "animate_bot_jobs_ended_total", state="failed", workflow="svd") == 0
    assert value(m, "animate_bot_refusals_total", reason="moderation") == 0
    assert value(m, "animate_bot_jobs_active", state="delivering") == 0


def test_a_server_going_down_makes_its_queue_depth_unknown() -> None:
    m = BotMetrics(server_names=["gpu-a"], process_metrics=False)
    m.server_status("gpu-a", up=True, queue_depth=2)
    m.server_status("gpu-a", up=False)
    assert value(m, "animate_bot_server_up", server="gpu-a") == 0
    assert math.isnan(value(m, "animate_bot_server_queue_depth", server="gpu-a") or 0.0)


def test_two_bots_in_one_process_do_not_clash() -> None:
    first = BotMetrics(server_names=["a"], process_metrics=True)
    second = BotMetrics(server_names=["a"], process_metrics=True)
    first.refused(RefusalReason.LIMIT)
    assert value(first, "animate_bot_refusals_total", reason="limit") == 1
    assert value(second, "animate_bot_refusals_total", reason="limit") == 0
    assert "process_cpu_seconds_total" in first.exposition() or "python_info" in first.exposition()


def test_fixed_vocabularies_are_enforced() -> None:
    m = BotMetrics(process_metrics=False)
    with pytest.raises(ValueError):
        m.refused("because")
    with pytest.raises(ValueError):
        m.job_ended(JobState.RUNNING, "svd")
    with pytest.raises(ValueError):
        m.job_counts({JobState.DELIVERED: 1})
    m.discord_429(route="PATCH /channels/:id", scope="galactic")
    assert value(m, "animate_bot_discord_rate_limited_total", route="PATCH /channels/:id", scope="unknown") == 1


def test_no_address_user_id_guild_id_or_token_ever_becomes_a_label() -> None:
    token = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.secretsecretsecretsecret"
    settings = load_settings({
        "DISCORD_TOKEN": token,
        "COMFYUI_TOKEN": "comfy-bearer-secret",
        "COMFYUI_URLS": "gpu=http://alice:hunter22@10.1.2.3:8188/comfy,http://192.168.7.7:8188",
    })
    m = BotMetrics(server_names=[s.name for s in settings.comfyui_servers], workflows=["svd"],
                   process_metrics=False)  # the process's own numbers (memory, start time) may hold any digits
    for server in settings.comfyui_servers:
        m.server_status(server.name, up=True, queue_depth=1)
        m.ws_reconnected(server.name)
        # a caller passing the URL, the token or a user id by mistake: dropped, not labelled
        m.server_status(server.url, up=True, queue_depth=9)
        m.ws_reconnected("http://alice:hunter22@10.1.2.3:8188")
    m.server_status(token, up=True)
    m.job_ended(JobState.FAILED, "http://10.1.2.3:8188/" + token)
    user_id, guild_id = "123456789012345678", "876543210987654321"
    m.discord_429(route=f"POST /channels/{guild_id}/messages", scope="user")
    m.discord_429(route=f"POST /webhooks/{user_id}/{token}/messages/@original", scope="shared")
    text = m.exposition()
    for secret in (token, "comfy-bearer-secret", "hunter22", "alice", "10.1.2.3", "192.168.7.7", "8188", user_id, guild_id):
        assert secret not in text, secret
    assert value(text, "animate_bot_server_up", server="gpu") == 1
    assert value(text, "animate_bot_server_up", server="server-2") == 1
    assert value(text, "animate_bot_discord_rate_limited_total", route="other", scope="user") == 1


def test_only_known_workflows_are_labelled_by_name() -> None:
    m = BotMetrics(workflows=["svd"], process_metrics=False)
    m.job_ended(JobState.DELIVERED, "svd")
    m.job_ended(JobState.DELIVERED, "later")
    assert value(m, "animate_bot_jobs_ended_total", state="delivered", workflow="other") == 1
    m.add_workflows(["later"])
    assert value(m, "animate_bot_jobs_ended_total", state="delivered", workflow="later") == 0
    m.job_ended(JobState.DELIVERED, "later")
    assert value(m, "animate_bot_jobs_ended_total", state="delivered", workflow="later") == 1
    assert value(m, "animate_bot_jobs_ended_total", state="delivered", workflow="svd") == 1


def test_workflow_names_are_capped() -> None:
    m = BotMetrics(workflows=[f"flow{i}" for i in range(40)], process_metrics=False)
    m.job_ended(JobState.DELIVERED, "flow39")
    assert value(m, "animate_bot_jobs_ended_total", state="delivered", workflow="flow39") is None
    assert value(m, "animate_bot_jobs_ended_total", state="delivered", workflow="other") == 1


def test_label_value_keeps_a_safe_charset() -> None:
    assert label_value("gpu box #1") == "gpu_box__1"
    assert label_value("") == "unknown"
    assert len(label_value("x" * 500)) == 48


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (InvalidInput("no"), RefusalReason.BAD_INPUT),
        (NotAllowed("no"), RefusalReason.MODERATION),
        (LimitReached("no"), RefusalReason.LIMIT),
        (BackendUnavailable("no"), RefusalReason.UNAVAILABLE),
        (MissingPermissions(["Attach Files"]), RefusalReason.BOT_PERMISSIONS),
        (SafetyRefused(Rule.STRICT), RefusalReason.SAFETY),
        (JobFailed("no"), None),
        (RuntimeError("no"), None),
    ],
)
def test_refusal_reasons_for_the_bots_exceptions(exc: BaseException, reason: RefusalReason | None) -> None:
    assert refusal_reason_for(exc) == reason
