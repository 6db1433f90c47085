"""Many ComfyUI test servers in ONE process (the ``shared`` server layout of :mod:`bench.servers`).

``python -m bench.server_host --count N --root DIR [--step-time S]``

Starts N :class:`~standins.comfy_server.server.ComfyTestServer` on 127.0.0.1 (roots
``DIR/comfy0`` ... ``DIR/comfyN-1``), prints one ``URL <url>`` line per server and then
``READY``, and serves until SIGINT/SIGTERM. For runs with more servers than the machine has
room for processes (e.g. 64); their bookkeeping stays out of the bot's process either way.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from standins.comfy_server.server import ComfyTestServer


async def _serve(count: int, root: Path, step_time: float) -> None:
    servers = [ComfyTestServer(root / f"comfy{i}", step_time=step_time) for i in range(count)]
    started: list[ComfyTestServer] = []
    try:
        for server in servers:
            await server.start(0)
            started.append(server)
            sys.stdout.write(f"URL {server.url}\n")
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        for server in started:
            await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server_host", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--step-time", type=float, default=0.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve(args.count, args.root, args.step_time))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
