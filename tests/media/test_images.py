"""Input image preparation on real files made here: formats, orientation, modes, limits."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageFile

from bot.errors import InvalidInput
from bot.media.images import (
    check_declared_size,
    choose_target,
    content_upload_name,
    prepare_image,
    prepare_image_async,
)

from .conftest import encode, photo


def refused(data: bytes, text: str, **kwargs: object) -> str:
    """Assert prepare_image refuses ``data`` with a member message containing ``text``."""
    with pytest.raises(InvalidInput) as caught:
        prepare_image(data, **kwargs)  # type: ignore[arg-type]
    assert text in caught.value.user_message, caught.value.user_message
    return caught.value.user_message


def _decoded(png: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG"
    im.load()
    return im


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("PNG", {}), ("JPEG", {"quality": 90}), ("WEBP", {"quality": 80}), ("GIF", {}), ("BMP", {}), ("TIFF", {})],
)
def test_each_accepted_format_becomes_a_plain_rgb_png(fmt: str, params: dict) -> None:
    data = encode(photo((640, 360)), fmt, **params)
    prepared = prepare_image(data)
    assert prepared.source_format == fmt
    assert (prepared.width, prepared.height) == (1024, 576)
    assert prepared.source_size == (640, 360)
    out = _decoded(prepared.png)
    assert out.mode == "RGB" and out.size == (1024, 576)
    assert not (set(out.info) - {"dpi"}), out.info  # no metadata carried over


def test_animated_gif_uses_the_first_frame() -> None:
    red, blue = Image.new("RGB", (200, 200), (255, 0, 0)), Image.new("RGB", (200, 200), (0, 0, 255))
    data = encode(red, "GIF", save_all=True, append_images=[blue], duration=100)
    out = _decoded(prepare_image(data).png)
    r, g, b = out.getpixel((384, 384))
    assert r > 200 and b < 50


def test_type_is_judged_from_bytes_not_name() -> None:
    refused(b"hello, I am a text file named cat.png\n" * 10, "PNG, JPEG, WebP, GIF, BMP or TIFF")
    ico = encode(Image.new("RGB", (64, 64)), "ICO")  # a real image, but not an accepted type
    refused(ico, "not an image I can read")


def test_exif_orientation_is_applied() -> None:
    im = photo((800, 400))  # stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: portrait
    prepared = prepare_image(encode(im, "JPEG", exif=exif.tobytes()))
    assert prepared.source_size == (400, 800)
    assert (prepared.width, prepared.height) == (576, 1024)


def test_rgba_is_composited_on_white() -> None:
    im = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    im.paste((255, 0, 0, 255), (100, 100, 200, 200))
    out = _decoded(prepare_image(encode(im, "PNG")).png)
    assert out.mode == "RGB" and out.size == (768, 768)
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((384, 384)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["CMYK", "LA", "P", "L", "1"])
def test_other_modes_become_rgb(mode: str) -> None:
    im = photo((256, 256)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = _decoded(prepare_image(encode(im, fmt)).png)
    assert out.mode == "RGB" and out.size == (768, 768)


def test_16_bit_greyscale_keeps_its_tones() -> None:
    row = struct.pack("<128H", *[65535] * 128) + struct.pack("<128H", *[32768] * 128)  # white | mid grey
    im = Image.frombytes("I;16", (256, 256), row * 256)
    assert im.getpixel((200, 0)) == 32768
    out = _decoded(prepare_image(encode(im, "PNG"), fit="stretch").png)
    assert out.mode == "RGB"
    assert out.getpixel((10, 384))[0] == 255
    assert 120 <= out.getpixel((700, 384))[0] <= 135  # not clipped to white


@pytest.mark.parametrize(
    ("fit", "corner"),
    [("crop", (200, 0, 0)), ("pad", (0, 0, 0)), ("stretch", (200, 0, 0))],
)
def test_fit_modes(fit: str, corner: tuple[int, int, int]) -> None:
    im = Image.new("RGB", (1000, 1000), (200, 0, 0))  # square into a square target: use a wide one
    wide = Image.new("RGB", (2000, 1000), (200, 0, 0))
    out = _decoded(prepare_image(encode(wide, "PNG"), fit=fit).png)
    assert out.size == (1024, 576)
    assert out.getpixel((512, 0)) == corner  # pad puts black bars above and below
    assert _decoded(prepare_image(encode(im, "PNG"), fit=fit).png).size == (768, 768)


def test_targets_follow_aspect() -> None:
    assert choose_target(1920, 1080) == (1024, 576)
    assert choose_target(1080, 1920) == (576, 1024)
    assert choose_target(1000, 1100) == (768, 768)


@pytest.mark.parametrize(
    ("size", "target"),
    [
        ((4032, 3024), (1024, 576)),  # 4:3 phone photo: SVD's native landscape size, not square
        ((640, 480), (1024, 576)),
        ((3024, 4032), (576, 1024)),  # 3:4 portrait photo
        ((1500, 1000), (1024, 576)),  # 3:2
        ((1280, 1024), (768, 768)),  # 5:4 is nearer square
        ((1000, 1250), (768, 768)),  # 4:5
    ],
)
def test_4_3_photos_get_the_native_landscape_or_portrait_size(size: tuple[int, int], target: tuple[int, int]) -> None:
    assert choose_target(*size) == target
    prepared = prepare_image(encode(photo(size), "JPEG"))
    assert (prepared.width, prepared.height) == target
    assert prepared.width % 64 == 0 and prepared.height % 64 == 0


def test_truncated_png_is_refused() -> None:
    data = encode(photo((400, 400)), "PNG")
    refused(data[: len(data) // 2], "damaged or incomplete")


def test_empty_and_garbage_are_refused() -> None:
    with pytest.raises(InvalidInput):
        prepare_image(b"")
    with pytest.raises(InvalidInput):
        prepare_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG that declares a huge size (a decompression bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(20000, 10000), (12000, 10000)])  # 200 MP (Pillow refuses too) and 120 MP (ours)
def test_pixel_bomb_is_refused_before_decoding(size: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    data = _png_header(*size)

    def no_decode(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    message = refused(data, "too large" if size[0] * size[1] > 179_000_000 else "the limit is 100 MP")
    assert "Please send a smaller" in message


def test_lower_pixel_limit_is_honoured() -> None:
    refused(encode(photo((1200, 1000)), "PNG"), "limit is 1 MP", max_pixels=1_000_000)


def test_tiny_image_is_refused() -> None:
    refused(encode(Image.new("RGB", (1, 1)), "PNG"), "at least 64x64")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # 96 MP: our own check passed
def test_12000x8000_jpeg_is_accepted(big_jpeg: bytes) -> None:
    # How fast is measured in bench/ (bench_prepare), not asserted here.
    prepared = prepare_image(big_jpeg)
    assert prepared.source_size == (12000, 8000)
    assert (prepared.width, prepared.height) == (1024, 576)


def test_declared_size_check() -> None:
    check_declared_size(1000, 1000)
    check_declared_size(None, 1000)
    with pytest.raises(InvalidInput) as caught:
        check_declared_size(30 * 1024 * 1024, 25 * 1024 * 1024)
    assert "30.0 MB; the limit is 25.0 MB" in caught.value.user_message


def test_upload_name_comes_from_the_prepared_image_only() -> None:
    """A re-roll of the same input reuses ComfyUI's copy; another image gets another name."""
    first = prepare_image(encode(photo((640, 360)), "PNG")).png
    other = prepare_image(encode(photo((640, 361)), "PNG")).png
    name = content_upload_name(first)
    assert name == content_upload_name(first) != content_upload_name(other)
    assert name.startswith("animate_") and name.endswith(".png") and len(name) == len("animate_.png") + 32


async def test_async_wrapper_runs_in_a_thread() -> None:
    prepared = await prepare_image_async(encode(photo((300, 300)), "PNG"), fit="pad")
    assert (prepared.width, prepared.height) == (768, 768)


def _detailed_photo(size: tuple[int, int]) -> Image.Image:
    """A photo-like picture with fine detail (edges, text-like strokes, grain), so any softening shows."""
    from PIL import ImageDraw

    im = photo(size)
    draw = ImageDraw.Draw(im)
    w, h = size
    for i in range(0, w, max(8, w // 150)):
        draw.line((i, 0, i + h // 3, h), fill=((i * 7) % 256, 255 - (i % 256), 90), width=3)
    for j in range(0, h, max(10, h // 60)):
        draw.rectangle((j, j, j + w // 20, j + 6), fill=(255, 255, 255))
    return im


def _psnr(a: Image.Image, b: Image.Image) -> float:
    import numpy as np

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return 99.0 if mse == 0 else 10 * float(np.log10(255.0**2 / mse))


@pytest.mark.parametrize(("fit", "size", "target", "picture", "min_psnr"), [
    ("crop", (4000, 3000), (1024, 576), "detailed", 38.0),
    ("pad", (4000, 3000), (1024, 576), "detailed", 38.0),
    ("stretch", (4000, 3000), (1024, 576), "detailed", 38.0),
    ("crop", (3000, 4000), (576, 1024), "detailed", 38.0),
    ("crop", (3264, 3264), (768, 768), "detailed", 33.0),  # decoded at 1/4 (816 px): the worst case
    ("crop", (3264, 3264), (768, 768), "photo", 45.0),
    ("crop", (4000, 3000), (1024, 576), "photo", 45.0),
])
def test_draft_decoding_gives_the_right_size_and_the_picture_of_a_full_decode(
        fit: str, size: tuple[int, int], target: tuple[int, int], picture: str, min_psnr: float) -> None:
    """A 12 MP JPEG is decoded at the smallest DCT scale that still covers the target, then resized
    with the same bicubic filter: the result has the target size and looks like the non-draft path
    (a full decode, fitted the same way). PSNR in dB; above about 40 no difference shows, and even
    lines and text-like strokes one pixel apart (``detailed``) stay above 33."""
    from bot.media.images import _draft_request, _fit

    original = _detailed_photo(size) if picture == "detailed" else photo(size)
    data = encode(original, "JPEG", quality=92)
    prepared = prepare_image(data, fit=fit)
    assert (prepared.width, prepared.height) == target
    draft = Image.open(io.BytesIO(data))
    draft.draft("RGB", _draft_request(draft.size, target, fit, False))
    assert draft.size[0] < size[0] and draft.size[0] >= min(target)  # it did decode smaller, not too small
    full = Image.open(io.BytesIO(data)).convert("RGB")
    assert _psnr(_decoded(prepared.png).convert("RGB"), _fit(full, target, fit)) > min_psnr


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 5), (1024, 576), (333, 101)])
def test_encode_png_is_exact(size: tuple[int, int]) -> None:
    from bot.media.images import encode_png

    im = photo(size) if min(size) > 1 else Image.new("RGB", size, (12, 250, 3))
    png = encode_png(im)
    back = _decoded(png)
    assert back.mode == "RGB" and back.size == size and back.tobytes() == im.tobytes()
    assert not back.info.get("exif") and png.startswith(b"\x89PNG\r\n\x1a\n")
    flat = encode_png(Image.new("RGB", (1024, 576), (40, 80, 120)))
    assert len(flat) < 10_000  # runs compress to almost nothing
    with pytest.raises(ValueError):
        encode_png(Image.new("L", (4, 4)))
