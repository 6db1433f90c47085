"""Parity: K members' jobs at once through the whole bot, and the same jobs through a minimal direct client.

``python -m bench parity [--quick] [--pairs N] [--members K] [--step-time S] [--steps N] [--video-seconds S] [--out FILE]``

One ComfyUI test server in its own process with a per-step time that makes it the bottleneck
(default 0.15 s per sampling step, 8 steps, and a video node taking 1.0 s: at least 2.2 s per job,
plus writing the GIF) is
shared by two clients, run in turn, ``--pairs`` times (the order alternates per pair):

- **bot**: ``python -m bot run`` in its own process (:class:`standins.bot_process.BotProcess`),
  logged into the Discord stand-in (rate limits on, in the driver's process), default settings
  (``COMFYUI_MAX_PENDING`` default, the default safety mode): ``K`` members each send one
  ``/animate`` at the same moment in one channel; the round ends when the stand-in has the last
  message with its file;
- **direct**: a minimal client (one thread per job, as ComfyUI's example script: prepare the image,
  ``POST /upload/image``, a websocket, ``POST /prompt``, wait for the prompt's last ``executing``,
  ``GET /history``, ``GET /view``) with the same images and the same graph; the round ends when the
  last file is received.

Each round's time is from its first job sent to its last file received; a pair's ratio is bot /
direct. Goal: median ratio at most 1.05 (the bot keeps ComfyUI as busy as a direct client). The
stand-in must answer no request with 429. Report in ``bench/results/parity.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR, write_report

REPO = Path(__file__).resolve().parents[1]
GOAL_RATIO = 1.05


@dataclass(frozen=True)
class ParityConfig:
    pairs: int = 5
    members: int = 6
    step_time: float = 0.15
    steps: int = 8
    frames: int = 14
    video_seconds: float = 1.0
    quick: bool = False


QUICK = ParityConfig(pairs=5, step_time=0.08, video_seconds=0.6, quick=True)


def _images(round_no: int, k: int) -> list[bytes]:
    """Distinct photo-like 640x360 PNGs per round (ComfyUI never serves one from its cache)."""
    from bench.latency import photo_png

    return [photo_png(10_000 + round_no * 100 + i, size=(640, 360)) for i in range(k)]


def _options(config: ParityConfig) -> dict[str, Any]:
    return {"frames": config.frames, "steps": config.steps, "format": "gif"}


# ---------------------------------------------------------------------------- the direct client


def _direct_job(server: str, workflow: Any, image: bytes, options: dict[str, Any], index: int) -> float:
    """One job the example script's way; returns when its file was received (time.monotonic())."""
    from bench.baseline import BlockingWebSocket, _get_json, _queue_prompt, _upload, _view
    from bot.jobs.pipeline import build_graph
    from bot.media.images import prepare_image
    from bot.workflows import resolve_options

    prepared = prepare_image(image)
    job_id = f"direct{index}-{uuid.uuid4().hex[:8]}"
    name = _upload(server, prepared.png, f"animate_{job_id}.png")
    resolved = resolve_options(workflow, options, random.Random(index))
    graph = build_graph(workflow, resolved, image_name=name, width=prepared.width, height=prepared.height,
                        job_id=job_id)
    client_id = uuid.uuid4().hex
    ws = BlockingWebSocket(server.replace("http://", "ws://", 1) + f"/ws?clientId={client_id}")
    try:
        prompt_id = str(uuid.uuid4())
        _queue_prompt(server, graph, client_id, prompt_id)
        while True:
            out = ws.recv()
            if isinstance(out, str):
                message = json.loads(out)
                data = message.get("data") or {}
                if message.get("type") == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    break
        history = _get_json(f"{server}/history/{prompt_id}")[prompt_id]
        for node_output in history["outputs"].values():
            for items in node_output.values():
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and "filename" in item:
                        _view(server, item)
                        return time.monotonic()
        raise RuntimeError(f"prompt {prompt_id} produced no file")
    finally:
        ws.close()


def _direct_round(server: str, workflow: Any, images: list[bytes], options: dict[str, Any]) -> float:
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        ends = list(pool.map(lambda pair: _direct_job(server, workflow, pair[1], options, pair[0]),
                             enumerate(images)))
    return max(ends) - start


# ---------------------------------------------------------------------------- the bot


async def _bot_round(stand_in: Any, channel: Any, members: list[Any], images: list[bytes],
                     options: dict[str, Any], timeout: float = 300.0) -> float:
    from bench.latency import ANIMATION_FILE

    first = len(stand_in.requests)
    start = time.monotonic()
    for i, (member, image) in enumerate(zip(members, images, strict=True)):
        await stand_in.slash(None, channel, member, "animate", options=options,
                             attachments={"image": (f"parity{i}.png", image, "image/png")})
    deadline = time.monotonic() + timeout
    while True:
        results = [r for r in stand_in.requests[first:] if r.status and 200 <= r.status < 300
                   and any(ANIMATION_FILE.search(name) for _f, name, _d in r.files)]
        if len(results) >= len(images):
            return max(r.answered_at for r in results) - start
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(results)}/{len(images)} results within the time-out")
        await asyncio.sleep(0.01)


async def run_parity(config: ParityConfig, work: Path) -> dict[str, Any]:
    from standins.bot_process import BotProcess
    from standins.comfy_server.fixtures import start_server_process
    from standins.discord_server import Channel, DiscordStandIn
    from standins.wait import wait_until

    from bot.workflows import load_workflows

    workflow = load_workflows(REPO / "workflows").registry.default
    assert workflow is not None
    comfy = start_server_process(work / "comfy", step_time=config.step_time,
                                 extra_args=("--video-seconds", str(config.video_seconds)))
    stand_in = DiscordStandIn(keep_file_bytes=False)
    await stand_in.start()
    channel = Channel(id=stand_in.snowflake(), guild_id=stand_in.guild.id, name="animate")
    stand_in.guild.channels.append(channel)
    members = [stand_in.add_member(f"member{m}") for m in range(config.members)]
    env = {"DISCORD_TOKEN": stand_in.token, "COMFYUI_URLS": f"gpu1={comfy.url}",
           "DEV_GUILD_ID": str(stand_in.guild.id), "DATA_DIR": str(work / "bot-data"),
           "WORKFLOWS_DIR": str(REPO / "workflows"), "LOG_LEVEL": "INFO"}
    bot = BotProcess(stand_in.api_base, stand_in.gateway_url, env, work / "bot.log")
    options = _options(config)
    pairs: list[dict[str, float]] = []
    result: dict[str, Any] = {"config": config.__dict__}
    try:
        await bot.start()
        await wait_until(lambda: bool(stand_in.command_syncs) and stand_in.ready.is_set() or not bot.running,
                         timeout=60, what="the bot to log in and sync its commands")
        if not bot.running:
            raise RuntimeError(f"the bot exited at start:\n{bot.log()[-3000:]}")
        # warm-up: one job each way (the bot's detector, the server's first run)
        await _bot_round(stand_in, channel, members[:1], _images(999, 1), options)
        await asyncio.to_thread(_direct_round, comfy.url, workflow, _images(998, 1), options)
        for n in range(config.pairs):
            sys.stderr.write(f"parity: pair {n + 1}/{config.pairs}\n")
            times: dict[str, float] = {}
            for side in (("bot", "direct") if n % 2 == 0 else ("direct", "bot")):
                images = _images(2 * n + (side == "direct"), config.members)
                if side == "bot":
                    times["bot"] = await _bot_round(stand_in, channel, members, images, options)
                else:
                    times["direct"] = await asyncio.to_thread(_direct_round, comfy.url, workflow, images, options)
            times["ratio"] = times["bot"] / times["direct"]
            pairs.append(times)
    finally:
        if bot.process is not None:
            result["bot_exit_status"] = await bot.terminate()
        await stand_in.stop()
        comfy.stop()
    result["pairs"] = pairs
    result["median_ratio"] = statistics.median(p["ratio"] for p in pairs) if pairs else float("nan")
    result["rate_limited"] = [f"{h.method} {h.path} ({h.bucket})" for h in stand_in.rate_limit_hits]
    result["violations"] = [v.kind for v in stand_in.unexpected_violations()]
    result["bot_log_errors"] = [line for line in bot.log().splitlines() if " ERROR " in line][:10]
    return result


def render(r: dict[str, Any], command: str) -> str:
    lines = ["### Parity: the bot against a direct client on the same server", ""]
    if "error" in r:
        return "\n".join([*lines, f"Not completed: {r['error']}"]) + "\n"
    c = r["config"]
    per_job = c["steps"] * c["step_time"] + c["video_seconds"]
    lines += [
        f"`{command}`: one ComfyUI test server ({c['step_time']:g} s per sampling step, {c['steps']} steps, a "
        f"video node taking {c['video_seconds']:g} s: at least {per_job:.1f} s per job, plus writing the GIF); "
        f"{c['members']} members' "
        "jobs at once (640x360 photos, 14-frame GIFs) through the whole bot (`python -m bot run`, the Discord "
        "stand-in with rate limits, default settings), and the same jobs through a minimal direct client "
        "(a thread per job: upload, websocket, `POST /prompt`, `/history`, `/view`), in turn, the order "
        "alternating per pair. Each round: first job sent -> last file received (for the bot: the stand-in "
        "has the last message with its file).",
        "",
        "| Pair | Bot (s) | Direct (s) | Bot / direct |",
        "|---|---|---|---|",
    ]
    for n, p in enumerate(r["pairs"], 1):
        lines.append(f"| {n} | {p['bot']:.2f} | {p['direct']:.2f} | {p['ratio']:.3f} |")
    ok = r["median_ratio"] <= GOAL_RATIO
    lines += ["", f"Median bot / direct: **{r['median_ratio']:.3f}** (goal <= {GOAL_RATIO:g}: "
              f"{'OK' if ok else 'MISSED'}). Stand-in 429s: {len(r['rate_limited']) or 'none'}; rule violations: "
              f"{r['violations'] or 'none'}; ERROR lines in the bot's log: {len(r['bot_log_errors'])}."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench parity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter jobs (about 2 minutes)")
    parser.add_argument("--pairs", type=int, default=None, help="bot/direct pairs (default 5)")
    parser.add_argument("--members", type=int, default=6, help="members' jobs at once (default 6)")
    parser.add_argument("--step-time", type=float, default=None, help="seconds per sampling step (default 0.15)")
    parser.add_argument("--steps", type=int, default=8, help="sampling steps per job (default 8)")
    parser.add_argument("--video-seconds", type=float, default=None, help="the video node's time (default 1.0)")
    parser.add_argument("--out", type=Path, default=None, help="report file (default bench/results/parity.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    base = QUICK if args.quick else ParityConfig()
    config = ParityConfig(pairs=args.pairs or base.pairs, members=args.members,
                          step_time=args.step_time if args.step_time is not None else base.step_time,
                          steps=args.steps, video_seconds=args.video_seconds or base.video_seconds, quick=args.quick)
    command = "python -m bench parity" + (" " + " ".join(argv if argv is not None else sys.argv[2:])).rstrip()
    with tempfile.TemporaryDirectory(prefix="animate-parity-") as tmp:
        try:
            result = asyncio.run(run_parity(config, Path(tmp)))
        except Exception as exc:  # noqa: BLE001 - reported in the table
            result = {"config": config.__dict__, "error": f"{type(exc).__name__}: {exc}"}
    return write_report(result, render(result, command),
                        args.out or RESULTS_DIR / ("parity-quick.md" if args.quick else "parity.md"))


if __name__ == "__main__":
    raise SystemExit(main())
