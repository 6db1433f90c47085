"""The real detector in the whole bot (issue 16): NudeNet is loaded at start, and one job's input
and result both go through it before the video is delivered."""

from __future__ import annotations

import threading

import pytest

from bot.safety import Detections, NudeNetDetector, RGBArray
from bot.safety.gate import SafetyState
from tests.animate.conftest import AnimateFactory, wait_job
from tests.safety.conftest import photo_path
from tests.safety_discord.helpers import outcome, result_of
from tests.animate.test_buttons_and_errors import job_id_of

pytestmark = pytest.mark.timeout(120)


class CountingDetector(NudeNetDetector):
    """The real NudeNet detector, remembering the size of every image it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []
        self._seen_lock = threading.Lock()

    def detect(self, image: RGBArray) -> Detections:
        found = super().detect(image)
        with self._seen_lock:
            self.seen.append((found.width, found.height))
        return found


async def test_a_real_jobs_input_and_result_both_go_through_nudenet(animate_bot: AnimateFactory) -> None:
    detector = CountingDetector()
    env = await animate_bot(safety=detector)
    status = env.bot.safety.status
    assert status.state is SafetyState.READY and status.detector.startswith("nudenet 3.4")
    assert status.load_seconds is not None

    image = photo_path("chelsea").read_bytes()
    record = await env.stand_in.slash(None, None, None, "animate", options={"steps": 4, "frames": 5},
                                      attachments={"image": ("chelsea.png", image, "image/png")})
    assert await outcome(record, timeout=60) == "delivered"  # a cat: clean
    job_id = job_id_of(result_of(record) or {})
    job = await wait_job(env.service, job_id, "delivered")
    assert job.result_meta["safety"]["input_level"] == "clean"
    # the prepared input (1024x576 or the like), then the first, middle and last of the 5 result frames
    assert len(detector.seen) == 4
    assert max(detector.seen[0]) >= 576 and all(max(size) <= 128 for size in detector.seen[1:])
