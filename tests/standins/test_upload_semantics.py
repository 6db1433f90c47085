"""Uploading an input image never rewrites a file another prompt may be reading (issue 13, defect 1).

The bot names an upload from the image's bytes and used to send it with ``overwrite=true``:
ComfyUI then rewrote the file in place, and a LoadImage reading it at that moment failed with
"cannot identify image file". ComfyUI 0.8.0's ``image_upload`` without overwrite keeps a file of
the same name and identical bytes (answering its name) and saves different bytes as
``name (1).ext`` (answering that name); it checks and writes in one plain function call, so two
uploads never interleave. These tests hold the bot's upload (:func:`bot.jobs.pipeline.upload_input`)
and the test server to that.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from bot.comfy.client import ComfyClient
from bot.jobs.pipeline import upload_input
from bot.media.images import content_upload_name
from bot.settings import ServerConfig
from standins.comfy_server import ComfyTestServer
from standins.comfy_server.nodes import NodeFailure, _load_image

pytestmark = pytest.mark.timeout(30)


def _png(color: tuple[int, int, int], size: tuple[int, int] = (256, 144)) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buf, format="PNG")  # big enough to write in two halves
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    image.paste(Image.new("RGB", (size[0] // 2, size[1]), color), (0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
async def client(comfy_server: ComfyTestServer) -> AsyncIterator[ComfyClient]:
    async with aiohttp.ClientSession() as session:
        yield ComfyClient(session, ServerConfig(name="gpu", url=comfy_server.url), timeout=10.0, retries=0)


def _files(server: ComfyTestServer) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in server.input_dir.iterdir()}


async def test_identical_bytes_uploaded_again_while_a_prompt_reads_the_file(
    comfy_server: ComfyTestServer, client: ComfyClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    png = _png((200, 30, 30))
    name = content_upload_name(png)
    assert await upload_input(client, png, name) == name
    target = comfy_server.input_dir / name

    # If the upload rewrites the file in place (open "wb", write), the reader below reads it at
    # the worst moment: after the first half is written. A slow disk, made deterministic.
    go = threading.Event()  # the reader may read now
    read = threading.Event()  # the reader has read
    write_bytes = Path.write_bytes

    def rewrite_in_two_halves(path: Path, data: bytes) -> int:
        if path != target or not path.exists():
            return write_bytes(path, data)
        with open(path, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            go.set()
            read.wait(5)
            fh.write(data[len(data) // 2:])
        return len(data)

    monkeypatch.setattr(Path, "write_bytes", rewrite_in_two_halves)

    def load_image_like_comfyui() -> str:
        go.wait(5)
        try:
            _load_image(target)  # what the test server's LoadImage does
            return "ok"
        except NodeFailure as failure:
            return failure.message.strip()
        finally:
            read.set()

    reader = asyncio.create_task(asyncio.to_thread(load_image_like_comfyui))
    again = await upload_input(client, png, name)  # e.g. two members post the same meme
    go.set()
    assert await reader == "ok"  # not "cannot identify image file ..."
    assert again == name
    assert _files(comfy_server) == {name: png}  # reused, not copied


async def test_identical_uploads_at_once_share_one_file(comfy_server: ComfyTestServer, client: ComfyClient) -> None:
    png = _png((30, 200, 30))
    name = content_upload_name(png)
    names = await asyncio.gather(*(upload_input(client, png, name) for _ in range(6)))
    assert set(names) == {name}
    assert _files(comfy_server) == {name: png}


async def test_different_bytes_under_one_name_get_their_own_file_and_the_answer_names_it(
    comfy_server: ComfyTestServer, client: ComfyClient
) -> None:
    first, second, third = _png((200, 30, 30)), _png((30, 30, 200)), _png((30, 200, 30))
    assert await upload_input(client, first, "in.png") == "in.png"
    assert await upload_input(client, second, "in.png") == "in (1).png"
    assert await upload_input(client, third, "in.png") == "in (2).png"
    assert await upload_input(client, second, "in.png") == "in (1).png"  # found again, not copied
    assert _files(comfy_server) == {"in.png": first, "in (1).png": second, "in (2).png": third}


async def test_the_test_server_checks_and_writes_without_yielding(comfy_server: ComfyTestServer, client: ComfyClient) -> None:
    """Different bytes under one new name, at once: one keeps the name, the other gets ``(1)``;
    neither is lost (checking and writing in a thread, the second could see no file yet and
    overwrite the first, both answering the plain name)."""
    for round_ in range(5):
        a, b = _png((200, 30, 10 * round_)), _png((30, 30, 200 - 10 * round_))
        name = f"race{round_}.png"
        refs = await asyncio.gather(client.upload_image(a, name), client.upload_image(b, name))
        names = [ref.filename for ref in refs]
        assert sorted(names) == [f"race{round_} (1).png", name]
        files = _files(comfy_server)
        assert {files[names[0]], files[names[1]]} == {a, b}
