"""Overhead per job: the bot's own cost on each side of ComfyUI, one job at a time.

Leg (a): the request reaches ``JobService.submit`` -> ``POST /prompt`` is about to be sent,
minus the image preparation (measured separately: it runs in a thread and has its own
benchmark, ``bench/bench_prepare.py``). Leg (b): the first completion event of the prompt
(``execution_success``, or ``executing`` with node null) is read from the hub's websocket ->
the result is handed to the delivery. Jobs run one after another so no job waits for another;
a few warm-up jobs are left out. Breakdown columns say where the time of each leg goes.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    FAST_OPTIONS,
    Marks,
    RecordingDelivery,
    bench_settings,
    instrument,
    jpeg_12mp,
    median,
    open_service,
    percentile,
    png_about_1mb,
)
from bot.jobs.service import JobRequest
from bot.media.images import content_upload_name

WARMUP = 3


async def _one_input(urls: list[str], data_dir: Path, name: str, image: bytes, jobs: int) -> dict[str, Any]:
    marks = Marks()
    delivery = RecordingDelivery()
    settings = bench_settings(urls, data_dir)
    leg_a: list[float] = []
    leg_b: list[float] = []
    prepare: list[float] = []
    upload: list[float] = []
    before_upload: list[float] = []
    upload_to_post: list[float] = []
    completion_to_download: list[float] = []
    download: list[float] = []
    after_download: list[float] = []
    async with aiohttp.ClientSession() as session:
        with instrument(marks):
            service = await open_service(settings, session, delivery)
            await service.start()
            for hub in service.hubs.values():
                await hub.wait_connected(10)
            try:
                for i in range(WARMUP + jobs):
                    delivery.done.clear()
                    delivery.expected = len(delivery.delivered) + len(delivery.ended) + 1
                    start = time.perf_counter()
                    job = await service.submit(
                        JobRequest(user_id=1000 + i, channel_id=1, guild_id=2, image=image, options=FAST_OPTIONS)
                    )
                    prep = marks.prepared[-1]
                    await asyncio.wait_for(delivery.done.wait(), 60)
                    if job.id in delivery.ended:
                        raise RuntimeError(f"job {job.id} did not succeed: {delivery.ended[job.id]}")
                    stored = await service.get(job.id)
                    assert stored is not None and stored.prompt_id is not None
                    prompt_id = stored.prompt_id
                    if i < WARMUP:
                        continue
                    posted = marks.posted[prompt_id]
                    done = marks.completed[prompt_id]
                    handed = delivery.delivered[job.id]
                    # uploads are named from the image's bytes; jobs run one at a time, so the
                    # last upload under that name is this job's
                    png = await asyncio.to_thread(Path(stored.input_path or "").read_bytes)
                    up_start, up_end = marks.upload[content_upload_name(png)]
                    down_start, down_end = marks.download[job.id]
                    prepare.append(prep)
                    leg_a.append(posted - start - prep)
                    before_upload.append(up_start - start - prep)
                    upload.append(up_end - up_start)
                    upload_to_post.append(posted - up_end)
                    leg_b.append(handed - done)
                    completion_to_download.append(down_start - done)
                    download.append(down_end - down_start)
                    after_download.append(handed - down_end)
            finally:
                await service.close()

    def ms(values: list[float]) -> dict[str, float]:
        return {"median": median(values) * 1000, "p99": percentile(values, 99) * 1000}

    return {
        "input": name,
        "input_bytes": len(image),
        "jobs": jobs,
        "prepare": ms(prepare),
        "leg_a": ms(leg_a),
        "leg_b": ms(leg_b),
        "a_before_upload": ms(before_upload),
        "a_upload": ms(upload),
        "a_upload_to_post": ms(upload_to_post),
        "b_to_download": ms(completion_to_download),
        "b_download": ms(download),
        "b_after_download": ms(after_download),
    }


async def run(urls: list[str], work: Path, *, jobs: int) -> dict[str, Any]:
    inputs = [("1 MB PNG (1024x768)", png_about_1mb()), ("12 MP JPEG (4000x3000)", jpeg_12mp())]
    results = []
    for index, (name, image) in enumerate(inputs):
        results.append(await _one_input(urls, work / f"overhead{index}", name, image, jobs))
    return {"overhead": results}
