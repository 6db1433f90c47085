"""The command line: ``python -m bot [run|doctor|animate]`` and the ``comfy-animate-bot`` script.

It loads ``.env``, builds the settings once, sets up logging and hands over to the
chosen command. Bad settings end the program with one line that names the variable
and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from dotenv import load_dotenv

from bot.logs import install_quiet_tracebacks, install_redaction
from bot.settings import Settings, SettingsError, configure_logging, load_settings

log = logging.getLogger(__name__)

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot",
        description="Discord bot that animates images with Stable Video Diffusion on ComfyUI.",
    )
    parser.add_argument("--env-file", default=".env", help="file of settings to load first (default: .env)")
    sub = parser.add_subparsers(dest="command", metavar="{run,doctor,animate}")

    run = sub.add_parser("run", help="start the Discord bot (the default)")
    run.add_argument("--sync", action="store_true", help="sync slash commands globally now")

    sub.add_parser("doctor", help="check settings, ComfyUI servers, workflows and the data folder")

    animate = sub.add_parser("animate", help="animate one image from the shell, without Discord")
    animate.add_argument("image", help="path of the input image")
    animate.add_argument("--out", required=True, help="where to write the video")
    animate.add_argument("--workflow", default=None, help="workflow name (default: the first one)")
    animate.add_argument("--server", default=None, help="ComfyUI server name (default: the first healthy one)")
    animate.add_argument(
        "--max-bytes", type=int, default=None, help="re-encode the video to MP4 until it fits this many bytes"
    )
    animate.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a workflow option, e.g. -o motion=127 -o frames=14 (repeatable)",
    )
    animate.add_argument(
        "--safety", choices=("strict", "standard", "off"), default="strict",
        help="content-safety check of the input and the result, and the verdict printed (default: strict)",
    )
    return parser


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "run"

    load_dotenv(args.env_file, override=False)
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        return _fail(str(exc))
    configure_logging(settings.log_level, settings.log_format)
    install_quiet_tracebacks(settings.log_level)
    install_redaction(settings)

    if command == "run":
        if not settings.discord_token:
            return _fail("DISCORD_TOKEN is not set (put the bot token in .env or the environment)")
        return _run(settings, sync=getattr(args, "sync", False))
    if command == "doctor":
        from bot.tools.doctor import run_doctor

        return run_doctor(settings)
    if command == "animate":
        from bot.tools.shell_animate import run_animate

        return run_animate(settings, args)
    return _fail(f"unknown command {command!r}")


def _run(settings: Settings, *, sync: bool) -> int:
    from bot.app import run_bot

    try:
        return run_bot(settings, sync=sync)
    except KeyboardInterrupt:
        return 0
