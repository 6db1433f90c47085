"""Fitting results to Discord's upload limit, poster frames, and limits by boost tier."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from PIL import Image

from bot.errors import JobFailed
from bot.media.video import MIB, fit_video, fit_video_async, poster_frame, upload_limit


def _decode(path_or_bytes: Path | bytes) -> tuple[str, str, int, tuple[int, int]]:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    with av.open(src) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return stream.codec_context.name, stream.codec_context.pix_fmt, frames, (stream.width, stream.height)


@pytest.mark.timeout(30)
def test_30_mb_gif_becomes_an_mp4_under_10_mib(noisy_gif: Path, tmp_path: Path) -> None:
    assert noisy_gif.stat().st_size > 25 * MIB
    dest = tmp_path / "out.mp4"
    fitted = fit_video(noisy_gif, 10 * MIB, dest=dest)
    assert fitted.reencoded and fitted.format == "mp4" and fitted.path == dest
    assert fitted.size == dest.stat().st_size <= 10 * MIB
    codec, pix_fmt, frames, size = _decode(dest)
    assert (codec, pix_fmt, frames) == ("h264", "yuv420p", 100)
    assert fitted.frames == 100 and size == (fitted.width, fitted.height)
    head = dest.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))  # faststart


def test_small_file_is_kept_as_is() -> None:
    frames = [Image.new("RGB", (64, 64), (i * 20, 0, 0)) for i in range(5)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=125, loop=0)
    data = buf.getvalue()
    fitted = fit_video(data, 10 * MIB)
    assert not fitted.reencoded and fitted.data == data and fitted.format == "gif"
    assert (fitted.width, fitted.height, fitted.frames) == (64, 64, 5)


def test_animated_webp_is_decoded_with_pillow() -> None:
    frames = [Image.effect_noise((128, 128), 80).convert("RGB") for _ in range(6)]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    data = buf.getvalue()
    fitted = fit_video(data, len(data) // 3)
    assert fitted.reencoded and fitted.format == "mp4" and fitted.data is not None
    assert fitted.size <= len(data) // 3
    assert _decode(fitted.data)[2] == 6


def test_garbage_or_impossible_limit_is_a_job_failure_not_a_crash() -> None:
    with pytest.raises(JobFailed):
        fit_video(b"not a video at all" * 100, 10)
    frames = [Image.effect_noise((64, 64), 90).convert("RGB") for _ in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(JobFailed) as caught:
        fit_video(buf.getvalue(), 300)
    assert "too big to post" in caught.value.user_message


def test_poster_frame_is_the_first_frame_as_png() -> None:
    frames = [Image.new("RGB", (80, 48), color) for color in ((0, 200, 0), (200, 0, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    png = poster_frame(buf.getvalue())
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.size == (80, 48)
    assert im.convert("RGB").getpixel((40, 24))[1] > 150


async def test_poster_of_an_mp4_and_async_wrapper(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (64, 64), (0, 0, 220)) for _ in range(3)] + [Image.effect_noise((64, 64), 90).convert("RGB")]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    fitted = await fit_video_async(buf.getvalue(), len(buf.getvalue()) - 1, dest=tmp_path / "v.mp4")
    assert fitted.path is not None and fitted.reencoded
    im = Image.open(io.BytesIO(poster_frame(fitted.path)))
    assert im.size == (fitted.width, fitted.height)
    assert im.convert("RGB").getpixel((im.width // 2, im.height // 2))[2] > 150  # the blue first frame


@pytest.mark.parametrize(
    ("tier", "interaction", "expected"),
    [(None, None, 10 * MIB), (0, None, 10 * MIB), (1, None, 10 * MIB), (2, None, 50 * MIB), (3, None, 100 * MIB), (0, 25 * MIB, 25 * MIB)],
)
def test_upload_limit(tier, interaction, expected) -> None:
    assert upload_limit(tier, interaction) == expected


def _h264(path: Path, pix_fmt: str, frames: int = 8, size: tuple[int, int] = (128, 96)) -> Path:
    """An H.264 MP4 like VHS's video/h264-mp4 writes (yuv420p), or another pixel format."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        for i in range(frames):
            frame = av.VideoFrame.from_image(Image.new("RGB", size, (i * 30, 80, 160)))
            for packet in stream.encode(frame.reformat(format=pix_fmt)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_vhs_h264_mp4_under_the_limit_is_passed_through_unchanged(tmp_path: Path) -> None:
    src = _h264(tmp_path / "SVD_00001.mp4", "yuv420p")
    before = src.read_bytes()
    fitted = fit_video(src, 10 * MIB)
    assert not fitted.reencoded and fitted.path == src and fitted.format == "mp4"
    assert src.read_bytes() == before and fitted.size == len(before)
    assert (fitted.width, fitted.height, fitted.frames) == (128, 96, 8)
    in_memory = fit_video(before, 10 * MIB)
    assert not in_memory.reencoded and in_memory.data == before


def test_small_mp4_discord_cannot_play_inline_is_reencoded(tmp_path: Path) -> None:
    src = _h264(tmp_path / "SVD_00002.mp4", "yuv444p")  # High 4:4:4: no inline playback in Discord
    fitted = fit_video(src, 10 * MIB, dest=tmp_path / "out.mp4")
    assert fitted.reencoded and fitted.size <= 10 * MIB
    assert _decode(fitted.path)[:3] == ("h264", "yuv420p", 8)


def test_vhs_animated_webp_result_under_the_limit_is_kept_and_has_a_poster() -> None:
    frames = [Image.new("RGB", (96, 64), (0, 10 * i, 200)) for i in range(5)]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], duration=125, lossless=False, quality=80)
    data = buf.getvalue()
    fitted = fit_video(data, 10 * MIB)
    assert not fitted.reencoded and fitted.format == "webp" and fitted.data == data
    assert (fitted.width, fitted.height, fitted.frames) == (96, 64, 5)
    poster = Image.open(io.BytesIO(poster_frame(data)))
    assert poster.format == "PNG" and poster.size == (96, 64)


def test_a_gif_is_judged_from_its_blocks_as_the_decoder_would() -> None:
    """Size, frames and rate of a GIF read from its blocks (nothing decoded) agree with PyAV's."""
    from bot.media.video import _gif_probe, _probe

    frames = [Image.new("RGB", (96, 64), (i * 30, 20, 200)) for i in range(7)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=125, loop=0)
    data = buf.getvalue()
    quick = _gif_probe(data)
    assert quick is not None and (quick.width, quick.height, quick.frames) == (96, 64, 7)
    decoded = _probe(Path(_write_tmp(data)))
    assert (quick.frames, quick.fps) == (decoded.frames, decoded.fps)
    assert _gif_probe(data[:40]) is None and _gif_probe(b"not a gif") is None
    fitted = fit_video(data, 10 * MIB)
    assert fitted.data == data and (fitted.frames, fitted.width, fitted.height) == (7, 96, 64)


def _write_tmp(data: bytes) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".gif", delete=False) as fh:
        fh.write(data)
        return fh.name


def test_poster_from_the_prepared_input_is_a_small_jpeg(tmp_path: Path) -> None:
    from bot.media.video import poster_from_image

    path = tmp_path / "input.png"
    Image.new("RGB", (1024, 576), (200, 40, 40)).save(path, format="PNG")
    poster = poster_from_image(path)
    assert poster is not None
    im = Image.open(io.BytesIO(poster))
    assert im.format == "JPEG" and im.size == (512, 288)
    assert abs(im.getpixel((256, 144))[0] - 200) < 8
    square = io.BytesIO()
    Image.new("RGB", (768, 768), (10, 200, 10)).save(square, format="PNG")
    assert Image.open(io.BytesIO(poster_from_image(square.getvalue()) or b"")).size == (512, 512)
    assert poster_from_image(tmp_path / "gone.png") is None
