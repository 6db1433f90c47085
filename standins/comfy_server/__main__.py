"""Run the ComfyUI test server in its own process.

``python -m standins.comfy_server --port N --root DIR [--step-time S] [--checkpoint NAME ...]
[--token T] [--basic-auth USER:PASS] [--prefix /comfy] [--full-size] [--video-seconds S] [--timeline]``

Prints ``URL <url>`` on one line once listening, then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .server import ComfyTestServer


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m standins.comfy_server", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--step-time", type=float, default=0.0)
    parser.add_argument("--mpx-step-time", type=float, default=0.0,
                        help="seconds added to each sampler step per frame-megapixel")
    parser.add_argument("--load-time", type=float, default=0.0, help="seconds the checkpoint loader takes (cold run)")
    parser.add_argument("--checkpoint", action="append", dest="checkpoints")
    parser.add_argument("--token", default=None)
    parser.add_argument("--basic-auth", default=None, help="USER:PASSWORD")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--video-seconds", type=float, default=0.0,
                        help="the video output node takes at least this long (a realistic encode)")
    parser.add_argument("--timeline", action="store_true", help="record a timeline (GET /_standin/timeline)")
    parser.add_argument("--without-node", action="append", dest="without_nodes", default=[],
                        help="a node class the server lacks (as if its pack were not installed)")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    basic = tuple(args.basic_auth.split(":", 1)) if args.basic_auth else None
    server = ComfyTestServer(
        args.root,
        step_time=args.step_time,
        checkpoints=tuple(args.checkpoints or ("svd_xt_1_1.safetensors",)),
        api_token=args.token,
        basic_auth=basic,  # type: ignore[arg-type]
        path_prefix=args.prefix,
        full_size=args.full_size,
        without_nodes=tuple(args.without_nodes),
        video_seconds=args.video_seconds,
        record_timeline=args.timeline,
        mpx_step_time=args.mpx_step_time,
        load_time=args.load_time,
    )
    await server.start(args.port)
    sys.stdout.write(f"URL {server.url}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
