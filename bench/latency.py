"""Latency: the two legs a member waits for, through the whole bot, and where their time goes.

``python -m bench latency [--quick] [--jobs N] [--submit-jobs M] [--video-seconds S] [--step-time S] [--modes M,..] [--out FILE]``

Three processes, as in production: the bot is ``python -m bot run``
(:class:`standins.bot_process.BotProcess`) logged into the Discord stand-in, which runs in this
(the driver's) process with Discord's rate limits on; the ComfyUI test server runs in a process
of its own at full size (``--full-size``: 1024x576 frames) with a video node that takes
``--video-seconds`` (default 1.5 s) to write a real 2-3 MB GIF (14 frames), and records a
timeline (``--timeline``). Every clock read is ``time.monotonic()``, the same clock in every
process on Linux, so the three processes' marks line up:

- ComfyUI's timeline (``GET /_standin/timeline``): each request received and answered, each
  prompt queued, each ``executed`` / ``execution_success`` sent;
- the stand-in's records: each REST request's arrival and the moment it was handled (for the
  result: the message with its file stored);
- the bot's ``bot.timing`` marks (DEBUG lines of that logger only; the bot logs at INFO otherwise,
  :mod:`bot.observability.timing`): per delivery and per prepared image.

Legs, one job at a time (each job's result is posted before the next job is sent), members in
one busy channel, real edit pacing, once per content-safety mode (``--modes``, default
``strict,off``: the default mode, NudeNet checking every input and every result, then ``off``, set
with ``/mod safety`` by a member with Manage Server):

- **deliver**: ComfyUI sends ``execution_success`` -> the stand-in has the complete message with
  the file (a 14-frame 1024x576 GIF of 2-3 MB), broken down into history, download, hand-over
  (store), the bot's own steps (the safety check of the result, read, poster, fit), scheduler
  wait and upload;
- **submit**: the interaction is created (``INTERACTION_CREATE`` sent) -> the prompt is in
  ComfyUI's queue, with a 12 MP JPEG (4000x3000, 2.1 MB): gateway, checks and defer, image
  download from the CDN, preparation (decode, fit, encode), the safety check of the input, store
  and dispatch, upload to ComfyUI, ``POST /prompt``.

Report: median and p95 per leg and per part, the stand-in's 429s (must be none), in
``bench/results/latency.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR, percentile, write_report

REPO = Path(__file__).resolve().parents[1]

GOAL_DELIVER_MEDIAN_MS = 50.0
GOAL_DELIVER_SAFETY_MEDIAN_MS = 100.0  # with the default safety mode (strict)
MODES = ("strict", "off")
PERM_MANAGE_GUILD = 1 << 5
GOAL_DELIVER_P95_MS = 150.0
GOAL_SUBMIT_MEDIAN_MS = 100.0
WARMUP = 2
ANIMATION_FILE = re.compile(r"animation_([A-Za-z0-9_-]+)\.\w+$")
#: A realistic clip: 14 frames (SVD's default) of 1024x576, as a GIF.
DELIVER_OPTIONS: dict[str, Any] = {"frames": 14, "steps": 8, "format": "gif"}
#: The submit leg ends when the prompt is queued; a short run keeps the benchmark short.
SUBMIT_OPTIONS: dict[str, Any] = {"frames": 2, "steps": 1, "format": "gif"}


@dataclass(frozen=True)
class LatencyConfig:
    jobs: int = 30  # deliver-leg jobs measured (after warm-up)
    submit_jobs: int = 20  # submit-leg jobs measured (after warm-up)
    video_seconds: float = 1.5
    step_time: float = 0.1
    quick: bool = False
    modes: tuple[str, ...] = MODES


QUICK = LatencyConfig(jobs=10, submit_jobs=8, quick=True)


# ---------------------------------------------------------------------------- inputs


def photo_png(seed: int, size: tuple[int, int] = (1024, 576), sigma: float = 16.0) -> bytes:
    """A photo-like PNG (gradients, grain, a few discs), different per seed; as a 14-frame GIF of
    the test server's slow zoom it weighs 2-3 MB."""
    from PIL import Image, ImageDraw

    w, h = size
    rng = random.Random(seed)
    base = Image.merge("RGB", (
        Image.linear_gradient("L").rotate(rng.choice([0, 90, 180, 270])).resize((w, h)),
        Image.radial_gradient("L").resize((w, h)),
        Image.effect_noise((w, h), sigma),
    ))
    draw = ImageDraw.Draw(base)
    for _ in range(12):
        x, y, r = rng.randrange(w), rng.randrange(h), rng.randrange(20, 120)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    buf = io.BytesIO()
    base.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_12mp_variant(base: Any, seed: int) -> bytes:
    """The 12 MP photo-like JPEG of ``bench/bench_prepare.py`` with a small mark of its own (so no
    two jobs share an input), quality 90 (about 2.1 MB)."""
    from PIL import ImageDraw

    image = base.copy()
    rng = random.Random(seed)
    x, y = rng.randrange(3800), rng.randrange(2800)
    ImageDraw.Draw(image).rectangle((x, y, x + 200, y + 200), fill=(rng.randrange(256), 40, 200))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


# ---------------------------------------------------------------------------- numbers


def summary(values: list[float]) -> dict[str, float]:
    """Median and p95 (ms) of seconds."""
    ms = [v * 1000 for v in values]
    return {"median": statistics.median(ms) if ms else math.nan, "p95": percentile(ms, 95), "n": len(ms)}


# ---------------------------------------------------------------------------- matching marks


def _first(events: list[dict[str, Any]], after: float, **match: Any) -> dict[str, Any] | None:
    for event in events:
        if event["t"] >= after and all(event.get(k) == v for k, v in match.items()):
            return event
    return None


def _request(events: list[dict[str, Any]], after: float, stage: str, method: str, path: str) -> dict[str, Any] | None:
    for event in events:
        if (event["t"] >= after and event["kind"] == "request" and event["stage"] == stage
                and event["method"] == method and (event["path"] == path or event["path"] == "/api" + path)):
            return event
    return None


def _bot_marks(log_text: str, what: str) -> list[dict[str, str]]:
    from bot.observability.timing import parse_marks

    return [fields for kind, fields in parse_marks(log_text) if kind == what]


@dataclass
class DeliverSample:
    job_id: str
    total: float
    parts: dict[str, float]
    gif_bytes: int


@dataclass
class SubmitSample:
    total: float
    milestones: dict[str, float]  # seconds after the interaction was created
    parts: dict[str, float]


BOT_PARTS = {"checked": "safety check", "read": "read", "poster": "poster", "fit": "fit", "queued": "embed", "sent": "scheduler wait"}


def deliver_sample(job_id: str, events: list[dict[str, Any]], marks: dict[str, str], result: Any,
                   gif_bytes: int) -> DeliverSample | None:
    """The deliver leg of one job from the three processes' marks (None when one is missing)."""
    queued = _first(events, -math.inf, kind="queued")
    if queued is None:
        return None
    prompt_id = queued["prompt_id"]
    success = _first(events, queued["t"], kind="ws", event="execution_success", prompt_id=prompt_id)
    if success is None:
        return None
    history = _request(events, success["t"], "sent", "GET", f"/history/{prompt_id}")
    view = _request(events, success["t"], "sent", "GET", "/view")
    if history is None or view is None or "start" not in marks or "sent" not in marks:
        return None
    bot = {k: float(v) for k, v in marks.items() if k in BOT_PARTS or k == "start"}
    parts = {"history": history["t"] - success["t"], "download": view["t"] - history["t"],
             "hand-over (store)": bot["start"] - view["t"]}
    previous = bot["start"]
    for name, when in sorted(((k, v) for k, v in bot.items() if k != "start"), key=lambda kv: kv[1]):
        parts[BOT_PARTS[name]] = when - previous
        previous = when
    parts["upload"] = result.answered_at - bot["sent"]
    return DeliverSample(job_id=job_id, total=result.answered_at - success["t"], parts=parts, gif_bytes=gif_bytes)


def submit_sample(created: float, events: list[dict[str, Any]], marks: dict[str, str] | None,
                  record: Any, stand_in: Any) -> SubmitSample | None:
    queued = _first(events, created, kind="queued")
    upload_received = _request(events, created, "received", "POST", "/upload/image")
    upload_sent = _request(events, created, "sent", "POST", "/upload/image")
    post_received = _request(events, created, "received", "POST", "/prompt")
    callbacks = [r for r in stand_in.requests if r.route == "interaction_callback" and f"/{record.id}/" in r.path]
    cdn = [r for r in stand_in.requests if r.route == "cdn" and r.received_at >= created]
    if None in (queued, upload_received, upload_sent, post_received) or not callbacks or not cdn or marks is None:
        return None
    assert queued is not None and upload_received is not None and upload_sent is not None and post_received is not None
    prep = {k: float(v) for k, v in marks.items() if k in ("start", "decoded", "fitted", "encoded")}
    milestones = {
        "ack (defer) answered": callbacks[0].answered_at - created,
        "image downloaded": cdn[0].answered_at - created,
        "prepared": prep["encoded"] - created,
        "uploaded to ComfyUI": upload_sent["t"] - created,
        "queued in ComfyUI": queued["t"] - created,
    }
    parts = {
        "decode": prep["decoded"] - prep["start"],
        "fit": prep["fitted"] - prep["decoded"],
        "encode PNG": prep["encoded"] - prep["fitted"],
        "preparation": prep["encoded"] - prep["start"],
        "prepared -> upload (safety check, store, queue, dispatch)": upload_received["t"] - prep["encoded"],
        "upload": upload_sent["t"] - upload_received["t"],
        "upload -> POST /prompt": post_received["t"] - upload_sent["t"],
        "POST /prompt -> queued": queued["t"] - post_received["t"],
    }
    return SubmitSample(total=queued["t"] - created, milestones=milestones, parts=parts)


# ---------------------------------------------------------------------------- the run


def _result_request(stand_in: Any, after_index: int) -> Any | None:
    for rec in stand_in.requests[after_index:]:
        if rec.status and 200 <= rec.status < 300 and any(ANIMATION_FILE.search(name) for _f, name, _d in rec.files):
            return rec
    return None


async def _one_job(stand_in: Any, channel: Any, member: Any, options: dict[str, Any],
                   attachment: tuple[str, bytes, str], timeout: float = 120.0) -> tuple[float, Any, Any, int]:
    """Send one /animate and wait until its result is posted: (created, interaction record, the
    result request, index of the first request of this job)."""
    start_index = len(stand_in.requests)
    created = time.monotonic()
    record = await stand_in.slash(None, channel, member, "animate", options=options,
                                  attachments={"image": attachment})
    deadline = time.monotonic() + timeout
    while True:
        result = _result_request(stand_in, start_index)
        if result is not None:
            return created, record, result, start_index
        ended = [r for r in stand_in.requests[start_index:] if r.route in ("webhook_execute", "interaction_callback")
                 and isinstance(r.json, dict) and int(((r.json.get("data") or r.json) or {}).get("flags") or 0) & 64]
        if ended:
            raise RuntimeError(f"the job ended without a result: {ended[0].json}")
        if time.monotonic() > deadline:
            raise RuntimeError("no result within the time-out")
        await asyncio.sleep(0.01)


async def _wait_marks(bot: Any, what: str, pick: Any, timeout: float = 10.0) -> dict[str, str]:
    """The bot's timing line for ``what`` that ``pick`` accepts (it is logged once the call returns,
    which can be after the stand-in already has the message)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in _bot_marks(bot.log(), what) if pick(m)]
        if found or time.monotonic() > deadline:
            return found[-1] if found else {}
        await asyncio.sleep(0.05)


async def run_latency(config: LatencyConfig, work: Path) -> dict[str, Any]:
    import aiohttp
    from PIL import Image

    from bench.bench_prepare import make_jpeg
    from standins.bot_process import BotProcess
    from standins.comfy_server.control import ComfyControl
    from standins.comfy_server.fixtures import start_server_process
    from standins.discord_server import Channel, DiscordStandIn
    from standins.wait import wait_until

    comfy = start_server_process(work / "comfy", step_time=config.step_time,
                                 extra_args=("--full-size", "--video-seconds", str(config.video_seconds), "--timeline"))
    stand_in = DiscordStandIn(keep_file_bytes=False)
    await stand_in.start()
    channel = Channel(id=stand_in.snowflake(), guild_id=stand_in.guild.id, name="animate")
    stand_in.guild.channels.append(channel)
    members = [stand_in.add_member(f"member{m}") for m in range(4)]
    env = {
        "DISCORD_TOKEN": stand_in.token,
        "COMFYUI_URLS": f"gpu1={comfy.url}",
        "DEV_GUILD_ID": str(stand_in.guild.id),
        "DATA_DIR": str(work / "bot-data"),
        "WORKFLOWS_DIR": str(REPO / "workflows"),
        "LOG_LEVEL": "INFO",
    }
    bot = BotProcess(stand_in.api_base, stand_in.gateway_url, env, work / "bot.log", debug_loggers=("bot.timing",))
    result: dict[str, Any] = {"config": config.__dict__}
    legs: dict[str, tuple[list[DeliverSample], list[SubmitSample], list[int]]] = {}
    try:
        await bot.start()
        await wait_until(lambda: bool(stand_in.command_syncs) and stand_in.ready.is_set() or not bot.running,
                         timeout=60, what="the bot to log in and sync its commands")
        if not bot.running:
            raise RuntimeError(f"the bot exited at start:\n{bot.log()[-3000:]}")
        admin = stand_in.add_member("admin", permissions=int(members[0].permissions) | PERM_MANAGE_GUILD)
        base = Image.open(io.BytesIO(make_jpeg((4000, 3000))))
        base.load()
        async with aiohttp.ClientSession() as session:
            control = ComfyControl(session, comfy.url)
            for mode in config.modes:
                await _set_safety_mode(stand_in, channel, admin, mode)
                legs[mode] = await _run_legs(config, mode, stand_in, channel, members, bot, control, base)
    finally:
        if bot.process is not None:
            result["bot_exit_status"] = await bot.terminate()
        await stand_in.stop()
        comfy.stop()
    log_text = bot.log()
    result["bot_log_errors"] = [line for line in log_text.splitlines() if " ERROR " in line or "Traceback" in line][:10]
    result["rate_limited"] = [f"{h.method} {h.path} ({h.bucket})" for h in stand_in.rate_limit_hits]
    result["violations"] = [v.kind for v in stand_in.unexpected_violations()]
    result["rest_requests"] = len(stand_in.requests)
    result["modes"] = {mode: _leg_summaries(*samples) for mode, samples in legs.items()}
    return result


def _leg_summaries(deliver: list[DeliverSample], submit: list[SubmitSample], jpeg_sizes: list[int]) -> dict[str, Any]:
    return {
        "deliver": {
            "total": summary([s.total for s in deliver]),
            "parts": {name: summary([s.parts.get(name, 0.0) for s in deliver]) for name in _part_names(deliver)},
            "gif_mb": statistics.median(s.gif_bytes for s in deliver) / 1e6 if deliver else math.nan,
            "samples": [s.__dict__ for s in deliver],
        },
        "submit": {
            "total": summary([s.total for s in submit]),
            "milestones": {name: summary([s.milestones[name] for s in submit])
                           for name in (submit[0].milestones if submit else {})},
            "parts": {name: summary([s.parts[name] for s in submit]) for name in (submit[0].parts if submit else {})},
            "jpeg_mb": statistics.median(jpeg_sizes) / 1e6 if submit else math.nan,
        },
    }


async def _set_safety_mode(stand_in: Any, channel: Any, admin: Any, mode: str) -> None:
    """``/mod safety mode:<mode>`` as a member with Manage Server, and wait for its answer."""
    command = stand_in.find_command("mod", stand_in.guild)
    data: dict[str, Any] = {"id": command["id"], "name": "mod", "type": 1, "options": [
        {"name": "safety", "type": 1, "options": [{"name": "mode", "type": 3, "value": mode}]}]}
    if command.get("guild_id"):
        data["guild_id"] = command["guild_id"]
    record = await stand_in._send_interaction(stand_in._interaction_base(2, stand_in.guild, channel, admin, None)
                                              | {"data": data})
    await record.wait_for(lambda r: bool(r.messages()), timeout=10)
    text = " ".join(str(m.get("content") or "") for m in record.messages())
    if "safety mode" not in text:
        raise RuntimeError(f"/mod safety mode:{mode} was not applied: {text!r}")


async def _run_legs(config: LatencyConfig, mode: str, stand_in: Any, channel: Any, members: list[Any], bot: Any,
                    control: Any, base: Any) -> tuple[list[DeliverSample], list[SubmitSample], list[int]]:
    """Both legs' jobs in one safety mode."""
    deliver: list[DeliverSample] = []
    submit: list[SubmitSample] = []
    sys.stderr.write(f"latency ({mode}): deliver leg, {config.jobs} jobs (+{WARMUP} warm-up)\n")
    for i in range(WARMUP + config.jobs):
        png = photo_png(i + (1000 if mode == "off" else 0))
        created, _record, answer, _ = await _one_job(
            stand_in, channel, members[i % len(members)], DELIVER_OPTIONS, (f"photo{i}.png", png, "image/png"))
        job_id = next(m.group(1) for _f, name, _d in answer.files if (m := ANIMATION_FILE.search(name)))
        events = await control.timeline(since=created)
        marks = await _wait_marks(bot, "delivery", lambda m, j=job_id: m.get("job") == j)
        stored = [a for m in stand_in.messages.values() for a in m.get("attachments") or []
                  if a.get("filename", "").startswith(f"animation_{job_id}")]
        sample = deliver_sample(job_id, events, marks, answer, int(stored[-1]["size"]) if stored else 0)
        if sample is None:
            raise RuntimeError(f"job {job_id}: marks missing (timeline {len(events)} events, bot {marks})")
        if i >= WARMUP:
            deliver.append(sample)
    sys.stderr.write(f"latency ({mode}): submit leg, {config.submit_jobs} jobs (+{WARMUP} warm-up)\n")
    jpeg_sizes = []
    for i in range(WARMUP + config.submit_jobs):
        jpeg = jpeg_12mp_variant(base, i + (1000 if mode == "off" else 0))
        jpeg_sizes.append(len(jpeg))
        prepares_before = len(_bot_marks(bot.log(), "prepare"))
        created, record, _answer, _ = await _one_job(
            stand_in, channel, members[i % len(members)], SUBMIT_OPTIONS, (f"photo{i}.jpg", jpeg, "image/jpeg"))
        events = await control.timeline(since=created)
        prepares = _bot_marks(bot.log(), "prepare")
        marks = prepares[prepares_before] if len(prepares) > prepares_before else None
        await _wait_marks(bot, "delivery", lambda m: True)  # its delivery is over before the next job
        sample_s = submit_sample(created, events, marks, record, stand_in)
        if sample_s is None:
            raise RuntimeError(f"submit job {i}: marks missing")
        if i >= WARMUP:
            submit.append(sample_s)
    return deliver, submit, jpeg_sizes


def _part_names(samples: list[DeliverSample]) -> list[str]:
    names: list[str] = []
    for sample in samples:
        for name in sample.parts:
            if name not in names:
                names.append(name)
    return names


# ---------------------------------------------------------------------------- the report


def _f(value: Any, digits: int = 1) -> str:
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return f"{value:.{digits}f}"
    return "n/a"


def _pair(s: dict[str, float]) -> str:
    return f"{_f(s['median'])} / {_f(s['p95'])}"


DELIVER_ORDER = ["history", "download", "hand-over (store)", "safety check", "read", "poster", "fit", "embed",
                 "scheduler wait", "upload"]


def deliver_goal(mode: str, total: dict[str, float]) -> tuple[str, bool]:
    """The deliver leg's goal in ``mode`` and whether ``total`` meets it."""
    if mode == "off":
        return (f"median < {GOAL_DELIVER_MEDIAN_MS:g}, p95 < {GOAL_DELIVER_P95_MS:g}",
                total["median"] < GOAL_DELIVER_MEDIAN_MS and total["p95"] < GOAL_DELIVER_P95_MS)
    return f"median < {GOAL_DELIVER_SAFETY_MEDIAN_MS:g}", total["median"] < GOAL_DELIVER_SAFETY_MEDIAN_MS


def _mode_label(mode: str) -> str:
    return "safety `strict` (the default)" if mode == "strict" else f"safety `{mode}`"


def render(r: dict[str, Any], command: str) -> str:
    lines: list[str] = []
    add = lines.append
    c = r["config"]
    add("### Latency through the whole bot")
    add("")
    if "error" in r:
        add(f"Not completed: {r['error']}")
        return "\n".join(lines) + "\n"
    modes: dict[str, Any] = r["modes"]
    add(f"`{command}`: `python -m bot run` in its own process, the Discord stand-in (rate limits on) in the "
        "driver's, one ComfyUI test server in a third at full size (1024x576 frames, a video node taking "
        f"{c['video_seconds']:g} s, {c['step_time']:g} s per sampling step); members in one channel, real edit "
        "pacing, one job at a time; each safety mode in turn (`/mod safety`). Times in ms, `median / p95`.")
    add("")
    first = next(iter(modes.values()))
    add(f"**Deliver leg** (`execution_success` sent by ComfyUI -> the stand-in has the complete message with the "
        f"file; {first['deliver']['total']['n']} jobs per mode, 14-frame 1024x576 GIF, median "
        f"{_f(first['deliver']['gif_mb'], 2)} MB):")
    add("")
    add("| Part | " + " | ".join(_mode_label(m) for m in modes) + " |")
    add("|---|" + "---|" * len(modes))
    cells = []
    for mode, legs in modes.items():
        goal, ok = deliver_goal(mode, legs["deliver"]["total"])
        cells.append(f"**{_pair(legs['deliver']['total'])}** (goal {goal}: {_verdict(ok)})")
    add("| **total** | " + " | ".join(cells) + " |")
    names = [n for n in DELIVER_ORDER if any(n in legs["deliver"]["parts"] for legs in modes.values())]
    names += [n for legs in modes.values() for n in legs["deliver"]["parts"] if n not in names]
    for name in dict.fromkeys(names):
        add(f"| {name} | " + " | ".join(_pair(legs["deliver"]["parts"][name]) if name in legs["deliver"]["parts"]
                                        else "n/a" for legs in modes.values()) + " |")
    add("")
    add(f"**Submit leg** (interaction created -> prompt in ComfyUI's queue; {first['submit']['total']['n']} jobs per "
        f"mode, 12 MP JPEG 4000x3000 of {_f(first['submit']['jpeg_mb'], 2)} MB, preparation and the input's safety "
        "check included):")
    add("")
    add("| Milestone (since the interaction was created) | " + " | ".join(_mode_label(m) for m in modes) + " |")
    add("|---|" + "---|" * len(modes))
    add("| **queued in ComfyUI (total)** | " + " | ".join(
        f"**{_pair(legs['submit']['total'])}** (goal median < {GOAL_SUBMIT_MEDIAN_MS:g}: "
        f"{_verdict(legs['submit']['total']['median'] < GOAL_SUBMIT_MEDIAN_MS)})" for legs in modes.values()) + " |")
    for name in first["submit"]["milestones"]:
        add(f"| {name} | " + " | ".join(_pair(legs["submit"]["milestones"][name]) for legs in modes.values()) + " |")
    add("")
    add("| Part | " + " | ".join(_mode_label(m) for m in modes) + " |")
    add("|---|" + "---|" * len(modes))
    for name in first["submit"]["parts"]:
        add(f"| {name} | " + " | ".join(_pair(legs["submit"]["parts"][name]) for legs in modes.values()) + " |")
    add("")
    add(f"Stand-in 429s: {len(r['rate_limited']) or 'none'}; rule violations: {r['violations'] or 'none'}; "
        f"{r['rest_requests']} REST requests; ERROR lines in the bot's log: {len(r['bot_log_errors'])}.")
    return "\n".join(lines) + "\n"


def _verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


# ---------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer jobs (about a minute)")
    parser.add_argument("--jobs", type=int, default=None, help="deliver-leg jobs (default 30; quick 10)")
    parser.add_argument("--submit-jobs", type=int, default=None, help="submit-leg jobs (default 20; quick 8)")
    parser.add_argument("--video-seconds", type=float, default=1.5, help="the video node's time (default 1.5)")
    parser.add_argument("--step-time", type=float, default=0.1, help="seconds per sampling step (default 0.1)")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="content-safety modes to measure, in turn (default strict,off)")
    parser.add_argument("--out", type=Path, default=None, help="report file (default bench/results/latency.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    base = QUICK if args.quick else LatencyConfig()
    config = LatencyConfig(jobs=args.jobs or base.jobs, submit_jobs=args.submit_jobs or base.submit_jobs,
                           video_seconds=args.video_seconds, step_time=args.step_time, quick=args.quick,
                           modes=tuple(m.strip() for m in args.modes.split(",") if m.strip()))
    command = "python -m bench latency" + (" " + " ".join(argv if argv is not None else sys.argv[2:])).rstrip()
    with tempfile.TemporaryDirectory(prefix="animate-latency-") as tmp:
        try:
            result = asyncio.run(run_latency(config, Path(tmp)))
        except Exception as exc:  # noqa: BLE001 - reported in the table
            result = {"config": config.__dict__, "error": f"{type(exc).__name__}: {exc}"}
    report = render(result, command)
    return write_report(result, report, args.out or RESULTS_DIR / ("latency-quick.md" if args.quick else "latency.md"))


if __name__ == "__main__":
    raise SystemExit(main())
