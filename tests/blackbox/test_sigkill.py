"""SIGKILL the bot at each phase of a job, start it again on the same DATA_DIR, and check what
the member gets.

The bot is a real process (``python -m bot run``) between the Discord stand-in and the ComfyUI
test server (its own process); nothing of the bot is imported. Each phase is reached by having
a stand-in hold back one chosen response, and recognised by what the stand-ins see (the held
request arriving, the status message's text). After the restart every case checks
(:meth:`World.check`): the member gets exactly one video (or, where the kill came before the
bot had the answer to its ``POST /prompt``, exactly one of a video and a clear failure), ComfyUI
ran each prompt at most once and no more prompts than jobs, no job is left unfinished, each status
message ends in a final state, and ``PRAGMA integrity_check`` on the job store says ok. A case
also checks that no status message had ended when the bot was killed (except where Discord
already had the video), so what the member gets comes from the restarted bot.

The kill lands within milliseconds of the phase being reached: in "queued in ComfyUI" the prompt
is in ComfyUI's queue, but whether the bot had read the answer to its POST by then is not
controlled (what the bot stored is the same either way).
"""

from __future__ import annotations

import pytest

from tests.blackbox.harness import World

pytestmark = pytest.mark.timeout(45)


async def test_killed_while_waiting_in_the_bots_line(world: World) -> None:
    # ComfyUI holds only the running prompt: a second job waits in the bot's own line.
    await world.start_bot(COMFYUI_MAX_PENDING="0")
    bob = world.discord.add_member("bob")
    running = await world.control.hold_step(1)
    await world.animate(must_deliver=True, colour=(200, 40, 40))
    await running.wait_held()
    second = await world.animate(bob, must_deliver=False, colour=(40, 200, 40))
    await world.wait_status(second, r"in line")
    await world.restart()
    await running.release()
    await world.check()


async def test_killed_after_the_image_upload_before_the_prompt(world: World) -> None:
    # The image is on ComfyUI; its answer never reached the bot, which posted no prompt.
    await world.start_bot()
    upload = await world.control.hold_request("POST", "/upload/image", stage="after")
    await world.animate(must_deliver=False, colour=(200, 120, 40))
    await upload.wait_held()
    await world.restart()
    await upload.release()
    await world.check()


async def test_killed_while_the_prompt_post_never_arrived(world: World) -> None:
    # The bot sent POST /prompt, but ComfyUI never got it (the connection died with the bot).
    await world.start_bot()
    post = await world.control.hold_request("POST", "/prompt", stage="before")
    await world.animate(must_deliver=False, colour=(120, 40, 200))
    await post.wait_held()
    await world.restart(while_down=lambda: post.release(drop=True))
    await world.check()


async def test_killed_before_the_prompt_post_was_answered(world: World) -> None:
    # ComfyUI queued the prompt (and runs it), its answer never reached the bot.
    await world.start_bot()
    post = await world.control.hold_request("POST", "/prompt", stage="after")
    await world.animate(must_deliver=False, colour=(40, 120, 200))
    await post.wait_held()
    await world.restart()
    await post.release()
    await world.check()


async def test_killed_while_queued_in_comfyui(world: World) -> None:
    await world.start_bot()
    queued = await world.control.hold_start()
    await world.animate(must_deliver=True, colour=(200, 200, 40))
    await queued.wait_held()  # the prompt waits in ComfyUI's queue
    await world.restart()
    await queued.release()  # it runs now, with the new bot listening
    await world.check()


async def test_killed_while_running(world: World) -> None:
    await world.start_bot()
    step = await world.control.hold_step(1)
    job = await world.animate(must_deliver=True, colour=(40, 200, 200))
    await step.wait_held()
    await world.wait_status(job, r"step \d+/\d+")  # the bot saw it run
    await world.restart()
    await step.release()
    await world.check()


async def test_killed_after_comfyui_finished_before_the_bot_saw_it(world: World) -> None:
    await world.start_bot()
    unseen = await world.control.hold_websocket("execution_success")
    await world.animate(must_deliver=True, colour=(200, 40, 200))
    prompt_id = (await unseen.wait_held())["prompt_id"]
    await world.wait_until_finished_on_comfy(prompt_id)
    await world.restart()
    await unseen.release()  # its socket is gone: the held messages are lost
    await world.check()


async def test_killed_while_the_result_downloads(world: World) -> None:
    await world.start_bot()
    download = await world.control.hold_request("GET", "/view", stage="before")
    await world.animate(must_deliver=True, colour=(90, 90, 90))
    await download.wait_held()
    await world.restart()
    await download.release()
    await world.check()


async def test_killed_while_uploading_to_discord_before_discord_got_it(world: World) -> None:
    await world.start_bot()
    upload = world.discord.hold("*", "*", with_files=True, stage="before")
    await world.animate(must_deliver=True, colour=(160, 80, 20))
    await upload.wait_held()
    await world.restart(while_down=lambda: upload.release(drop=True))  # the upload never completed
    await world.check()


async def test_killed_while_uploading_to_discord_after_discord_posted_it(world: World) -> None:
    await world.start_bot()
    upload = world.discord.hold("*", "*", with_files=True, stage="after")
    await world.animate(must_deliver=True, colour=(20, 80, 160))
    await upload.wait_held()
    # the video is on the status message already; the bot never heard back
    await world.restart(while_down=lambda: upload.release(drop=True), shown="video")
    await world.check()
