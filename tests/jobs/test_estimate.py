"""The queue wait estimator (bot.jobs.estimate): learning run times, cold runs, waits, wording."""

from __future__ import annotations

import pytest

from bot.jobs.estimate import (
    Queued,
    Recorded,
    RunRecord,
    Running,
    WaitEstimator,
    Work,
    format_wait,
)

PIXELS = 1024 * 576
MP = PIXELS / 1_000_000
# The "true" server: 0.07 s per step per frame-megapixel (about 1 s a step for 25 frames at
# 1024x576), 0.15 s per frame-megapixel to decode and encode, 1.5 s of overhead per run.
PER_STEP, PER_FRAME, OVERHEAD = 0.07, 0.15, 1.5


def work(frames: int, steps: int = 20, workflow: str = "svd_img2vid") -> Work:
    return Work(workflow, steps, frames, PIXELS)


def true_seconds(w: Work, speed: float = 1.0) -> float:
    mp_frames = w.frames * w.pixels / 1_000_000
    return (w.steps * mp_frames * PER_STEP + mp_frames * PER_FRAME + OVERHEAD) * speed


def run(server: str, w: Work, *, noise: float = 0.0, speed: float = 1.0) -> RunRecord:
    """A finished run as the true server would time it, ``noise`` as a relative error."""
    mp_frames = w.frames * w.pixels / 1_000_000
    k = (1.0 + noise) * speed
    return RunRecord(server, w, w.steps * mp_frames * PER_STEP * k, mp_frames * PER_FRAME * k, OVERHEAD * k)


def warmed(server: str = "gpu1", *, noises: tuple[float, ...] = (0.04, -0.03, 0.02), frames: tuple[int, ...] = (14, 25, 14)) -> WaitEstimator:
    """An estimator that saw a cold first run, then three warm ones of two frame counts."""
    estimator = WaitEstimator()
    cold = run(server, work(14))
    assert estimator.record(RunRecord(server, cold.work, cold.sampling_seconds * 3, cold.encode_seconds, 45.0)) is Recorded.COLD
    for n, noise in zip(frames, noises):
        assert estimator.record(run(server, work(n), noise=noise)) is Recorded.WARM
    return estimator


def test_none_until_three_warm_runs() -> None:
    estimator = WaitEstimator()
    job = work(25)
    assert estimator.estimate_wait(job, [Queued(work(14))], [], ["gpu1"]) is None
    assert estimator.record(run("gpu1", work(14))) is Recorded.COLD  # first run seen: model loading
    assert estimator.record(run("gpu1", work(25))) is Recorded.WARM
    assert estimator.record(run("gpu1", work(14))) is Recorded.WARM
    assert estimator.run_seconds("gpu1", job) is None
    assert estimator.estimate_wait(job, [Queued(work(14))], [], ["gpu1"]) is None
    assert format_wait(estimator.estimate_wait(job, [Queued(work(14))], [], ["gpu1"])) == "estimating..."
    assert estimator.record(run("gpu1", work(25))) is Recorded.WARM
    assert estimator.estimate_wait(job, [Queued(work(14))], [], ["gpu1"]) is not None
    # Another workflow on the same server has its own medians.
    assert estimator.run_seconds("gpu1", work(25, workflow="svd_img2vid_core")) is None


def test_wait_behind_two_jobs_with_two_frame_counts_is_close_to_the_truth() -> None:
    estimator = warmed()
    job = work(25)
    running = Running("gpu1", work(25), remaining_fraction=0.4)
    ahead = [Queued(work(14, steps=30))]
    truth = 0.4 * true_seconds(work(25)) + true_seconds(work(14, steps=30))
    got = estimator.estimate_wait(job, ahead, [running], ["gpu1"])
    assert got is not None
    assert abs(got - truth) / truth < 0.05  # the brief asks for 50 %; noise is +-4 %
    until_done = estimator.estimate_wait(job, ahead, [running], ["gpu1"], include_own_run=True)
    assert until_done is not None
    assert abs(until_done - (truth + true_seconds(job))) / (truth + true_seconds(job)) < 0.05


def test_exact_model_gives_the_exact_wait() -> None:
    estimator = warmed(noises=(0.0, 0.0, 0.0))
    ahead = [Queued(work(14)), Queued(work(25, steps=10))]
    truth = true_seconds(work(14)) + true_seconds(work(25, steps=10))
    assert estimator.estimate_wait(work(25), ahead, [], ["gpu1"]) == pytest.approx(truth)


def test_cold_run_is_excluded() -> None:
    estimator = warmed(noises=(0.0, 0.0, 0.0))
    rates = estimator.rates("gpu1", "svd_img2vid")
    assert rates is not None and rates.runs == 3
    assert rates.per_step == pytest.approx(PER_STEP) and rates.overhead == pytest.approx(OVERHEAD)
    # A restart makes the next run cold again, whatever it took.
    estimator.server_started("gpu1")
    assert estimator.record(run("gpu1", work(25), speed=10)) is Recorded.COLD
    assert estimator.run_seconds("gpu1", work(25)) == pytest.approx(true_seconds(work(25)))
    # The caller may say so outright too.
    assert estimator.record(run("gpu1", work(25), speed=10), cold=True) is Recorded.COLD
    assert estimator.warm_runs("gpu1", "svd_img2vid") == 3


def test_outliers_are_excluded_until_the_server_really_changed_speed() -> None:
    estimator = warmed(noises=(0.0, 0.0, 0.0))
    base = estimator.run_seconds("gpu1", work(25))
    assert estimator.record(run("gpu1", work(25), speed=3)) is Recorded.OUTLIER  # above 2 x the median
    assert estimator.record(run("gpu1", work(14))) is Recorded.WARM  # a normal one breaks the streak
    assert estimator.record(run("gpu1", work(14), speed=0.2)) is Recorded.OUTLIER  # a cached prompt
    assert estimator.record(run("gpu1", work(25), speed=3)) is Recorded.OUTLIER
    assert estimator.run_seconds("gpu1", work(25)) == pytest.approx(base)
    # Three in a row on the same side: the server is slower now; believe it.
    assert estimator.record(run("gpu1", work(14), speed=3)) is Recorded.OUTLIER
    assert estimator.record(run("gpu1", work(25), speed=3)) is Recorded.SHIFT
    assert estimator.run_seconds("gpu1", work(25)) == pytest.approx(3 * true_seconds(work(25)))


def test_invalid_durations_are_ignored() -> None:
    estimator = warmed()
    assert estimator.record(RunRecord("gpu1", work(14), 0.0, 1.0)) is Recorded.INVALID
    assert estimator.record(RunRecord("gpu1", work(14), -1.0, 1.0)) is Recorded.INVALID
    assert estimator.record(RunRecord("gpu1", work(14), float("nan"), 1.0)) is Recorded.INVALID
    assert estimator.warm_runs("gpu1", "svd_img2vid") == 3


def test_memory_is_bounded_per_key() -> None:
    estimator = WaitEstimator(window=20)
    for i in range(1000):
        estimator.record(run("gpu1", work(14 + i % 12), noise=(i % 7 - 3) / 100))
    assert estimator.warm_runs("gpu1", "svd_img2vid") == 20
    assert estimator.run_seconds("gpu1", work(25)) == pytest.approx(true_seconds(work(25)), rel=0.05)
    estimator.forget_server("gpu1")
    assert estimator.warm_runs("gpu1", "svd_img2vid") == 0 and estimator.run_seconds("gpu1", work(25)) is None


def test_jobs_ahead_are_spread_over_the_servers_that_can_run_the_job() -> None:
    estimator = warmed("gpu1", noises=(0.0, 0.0, 0.0))
    for n in (14, 25, 14, 25):
        estimator.record(run("gpu2", work(n)))
    t = true_seconds(work(14))
    ahead = [Queued(work(14)) for _ in range(4)]
    assert estimator.estimate_wait(work(14), ahead, [], ["gpu1", "gpu2"]) == pytest.approx(2 * t)
    assert estimator.estimate_wait(work(14), ahead, [], ["gpu1"]) == pytest.approx(4 * t)
    # A running job on gpu1 pushes the line onto gpu2 first.
    busy = [Running("gpu1", work(14), remaining_fraction=1.0)]
    assert estimator.estimate_wait(work(14), ahead[:1], busy, ["gpu1", "gpu2"]) == pytest.approx(t)
    # A job already queued on a server that cannot run ours does not delay it.
    assert estimator.estimate_wait(work(14), [Queued(work(14), server="gpu2")], [], ["gpu1"]) == 0.0
    assert estimator.estimate_wait(work(14), [Queued(work(14), server="gpu1")], [], ["gpu1", "gpu2"]) == 0.0
    assert estimator.estimate_wait(work(14), [Queued(work(14), server="gpu1")], [], ["gpu1"]) == pytest.approx(t)


def test_a_server_without_estimates_borrows_the_others_medians() -> None:
    estimator = warmed("gpu1", noises=(0.0, 0.0, 0.0))
    t = true_seconds(work(14))
    ahead = [Queued(work(14)) for _ in range(4)]
    assert estimator.estimate_wait(work(14), ahead, [], ["gpu1", "new"]) == pytest.approx(2 * t)
    assert estimator.estimate_wait(work(14), ahead, [], ["new"]) is None


def test_running_job_from_its_start_time() -> None:
    estimator = warmed(noises=(0.0, 0.0, 0.0))
    t = true_seconds(work(25))
    running = [Running("gpu1", work(25), started_at=100.0)]
    assert estimator.estimate_wait(work(25), [], running, ["gpu1"], now=100.0 + t / 4) == pytest.approx(0.75 * t)
    assert estimator.estimate_wait(work(25), [], running, ["gpu1"], now=100.0 + 2 * t) == 0.0
    assert estimator.estimate_wait(work(25), [], [Running("gpu1", work(25))], ["gpu1"]) == pytest.approx(0.5 * t)


def test_other_workflow_ahead_uses_its_own_rates_or_ours() -> None:
    estimator = warmed(noises=(0.0, 0.0, 0.0))
    core = work(14, workflow="svd_img2vid_core")
    assert estimator.estimate_wait(work(14), [Queued(core)], [], ["gpu1"]) == pytest.approx(true_seconds(core))
    for n in (14, 25, 14):
        estimator.record(run("gpu1", work(n, workflow="svd_img2vid_core"), speed=2))
    assert estimator.estimate_wait(work(14), [Queued(core)], [], ["gpu1"]) == pytest.approx(2 * true_seconds(core))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "estimating..."), (float("inf"), "estimating..."), (0.0, "starts in a moment"),
     (1.4, "starts in a moment"), (1.6, "starts in about 2 s"), (9.4, "starts in about 9 s"),
     (12.4, "starts in about 10 s"), (13, "starts in about 15 s"), (54, "starts in about 55 s"),
     (55, "starts in about 1 min"), (89, "starts in about 1 min"), (91, "starts in about 2 min"),
     (3600, "starts in about 60 min")],
)
def test_format_wait(seconds: float | None, text: str) -> None:
    assert format_wait(seconds) == text


def test_work_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Work("svd_img2vid", 0, 14, PIXELS)


def test_line_waits_give_each_asked_job_what_estimate_wait_gives_it() -> None:
    estimator = warmed("gpu1", noises=(0.0, 0.0, 0.0))
    for n in (14, 25, 14, 25):
        estimator.record(run("gpu2", work(n), speed=1.5))
    core = [estimator.record(run("gpu1", work(n, workflow="svd_img2vid_core"), speed=2)) for n in (14, 25, 14, 25)]
    assert core[-1] is Recorded.WARM
    line = [work(14), work(25, workflow="svd_img2vid_core"), work(25, steps=10), work(14), work(20), work(2)]
    asked = [True, False, True, True, False, True]
    running = [Running("gpu1", work(25), started_at=10.0)]
    queued = [Queued(work(14), "gpu2")]
    got = estimator.line_waits("svd_img2vid", list(zip(line, asked)), running, queued, ["gpu1", "gpu2"], now=12.0)
    for i, (w, ask) in enumerate(zip(line, asked)):
        expected = estimator.estimate_wait(w, [*queued, *(Queued(x) for x in line[:i])], running, ["gpu1", "gpu2"],
                                           now=12.0) if ask else None
        assert got[i] == (pytest.approx(expected) if ask else None)
    assert estimator.line_waits("unknown", [(work(14), True)], [], [], ["gpu1"]) == [None]
