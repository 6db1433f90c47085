"""A deterministic generator of 500 bad inputs for the image preparation and option checks.

``generate_cases(seed)`` returns exactly :data:`TOTAL` cases, the same ones for the same seed:

- images (``kind="image"``): truncated and corrupted files of every accepted format, declared
  decompression bombs (huge sizes in a few header bytes, made without allocating pixels),
  images at and past a pixel limit and the minimum side, wrong types (PDF, MP4, text, HTML,
  zip, SVG, empty), zero bytes, random bytes, and a few unusual but valid images;
- options (``kind="option"``): values at and past every bound of every member option of every
  workflow, plus ``None``, bools, NaN/inf, huge and negative numbers, junk strings, unknown names;
- names (``kind="name"``): hostile file names (path separators, ``..``, unicode, control
  characters) as the bytes fed to ``content_upload_name``.

``expect`` is ``"accept"``, ``"refuse"`` (must raise ``InvalidInput``) or ``"either"``.
"""

from __future__ import annotations

import io
import math
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageDraw

from bot.workflows import Workflow, load_workflows

TOTAL = 500
IMAGE_CASES = 300
OPTION_CASES = 150
NAME_CASES = TOTAL - IMAGE_CASES - OPTION_CASES
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
SMALL_LIMIT = 1_000_000  # max_pixels used by the "huge dimensions" cases
WORKFLOWS_DIR = Path(__file__).resolve().parents[2] / "workflows"

Expect = Literal["accept", "refuse", "either"]


@dataclass(frozen=True)
class Case:
    id: str
    kind: Literal["image", "option", "name"]
    expect: Expect
    data: bytes = b""
    max_pixels: int = 100_000_000
    fit: str = "crop"
    workflow: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    must_say: str = ""  # a regex a refusal's message must match (the reason a member needs)

    def __repr__(self) -> str:  # keep pytest ids and failure output short
        return f"Case({self.id})"


# ----------------------------------------------------------------------------- images


def base_image(rng: random.Random, size: tuple[int, int] = (160, 120)) -> Image.Image:
    """A small picture with shapes and noise, so corruption lands in real pixel data."""
    im = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        box = (x0, y0, x0 + rng.randrange(10, 80), y0 + rng.randrange(10, 60))
        draw.rectangle(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    noise = Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))
    return Image.merge("RGB", (im.getchannel(0), noise, im.getchannel(2)))


def encode(im: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_declared(width: int, height: int, *, bit_depth: int = 8, color: int = 2, rows: bytes | None = None) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` (valid CRCs), with little or no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    idat = zlib.compress(rows if rows is not None else b"\0" * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_zlib_bomb(width: int, height: int) -> bytes:
    """A 1-bit PNG whose tiny IDAT inflates to a full ``width`` x ``height`` picture."""
    row = b"\0" + b"\0" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row * height), compressor.flush()]
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b"")


def gif_declared(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    descriptor = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return b"GIF89a" + screen + descriptor + b"\x02\x02\x44\x01\x00;"


def bmp_declared(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    header = b"BM" + struct.pack("<IHHI", 14 + len(info) + 16, 0, 0, 14 + len(info))
    return header + info + b"\0" * 16


def tiff_declared(width: int, height: int) -> bytes:
    """A little-endian baseline RGB TIFF header declaring ``width`` x ``height``, 16 bytes of data."""
    entries = [
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2),
        (273, 4, 1, 0), (277, 3, 1, 3), (278, 4, 1, height), (279, 4, 1, 16),
    ]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    out = b"II*\0" + struct.pack("<I", ifd_offset) + struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        if tag == 273:
            value = data_offset
        packed = struct.pack("<HI", value, 0)[:4] if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    return out + struct.pack("<I", 0) + b"\0" * 16


def jpeg_declared(width: int, height: int, rng: random.Random) -> bytes:
    """A real small JPEG with its SOF0 size patched to ``width`` x ``height``."""
    data = bytearray(encode(base_image(rng, (64, 64)), "JPEG", quality=70))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def webp_declared(width: int, height: int) -> bytes:
    """A VP8X WebP whose canvas is ``width`` x ``height`` (24-bit fields), no image data."""
    vp8x = bytes([0, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def truncations(data: bytes, rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    cuts = sorted({1, 4, 8, 16, len(data) // 2, len(data) - 1} | {rng.randrange(1, len(data)) for _ in range(count)})
    return [(f"cut{c}", data[:c]) for c in cuts][:count]


def corruptions(data: bytes, rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for index in range(count):
        buf = bytearray(data)
        style = index % 4
        if style == 0:  # a few flipped bytes after the signature
            for _ in range(rng.randrange(1, 6)):
                pos = rng.randrange(8, len(buf))
                buf[pos] ^= 1 << rng.randrange(8)
        elif style == 1:  # a zeroed run
            start, n = rng.randrange(8, len(buf)), rng.randrange(4, 64)
            buf[start:start + n] = bytes(len(buf[start:start + n]))
        elif style == 2:  # random bytes overwrite the middle
            start = rng.randrange(len(buf) // 4, len(buf))
            chunk = rng.randbytes(rng.randrange(8, 128))
            buf[start:start + len(chunk)] = chunk
        else:  # header kept, body replaced by noise
            keep = min(len(buf), rng.randrange(12, 40))
            buf = bytearray(buf[:keep] + rng.randbytes(rng.randrange(16, 2048)))
        out.append((f"corrupt{index}s{style}", bytes(buf)))
    return out


def wrong_types(rng: random.Random) -> list[tuple[str, bytes]]:
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr(zipfile.ZipInfo("image.png", date_time=(2024, 1, 1, 0, 0, 0)), encode(base_image(rng), "PNG"))
    mp4 = (
        struct.pack(">I", 24) + b"ftypisom" + b"\0\0\x02\0" + b"isomiso2"
        + struct.pack(">I", 16) + b"mdat" + rng.randbytes(8)
    )
    return [
        ("pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"),
        ("mp4", mp4),
        ("webm", b"\x1a\x45\xdf\xa3" + rng.randbytes(200)),
        ("text", "Hello, here is my picture!\n".encode() * 20),
        ("html", b"<!DOCTYPE html><html><body><img src='x.png'></body></html>"),
        ("svg", b"<svg xmlns='http://www.w3.org/2000/svg' width='99999' height='99999'><rect/></svg>"),
        ("zip", zipped.getvalue()),
        ("gzip", zlib.compress(b"\0" * 100_000)),
        ("ico", encode(base_image(rng, (32, 32)), "ICO")),
        ("psd", b"8BPS\0\1" + b"\0" * 6 + struct.pack(">HIIHH", 3, 100, 100, 8, 3) + rng.randbytes(64)),
        ("empty", b""),
        ("json", b'{"image": "data:image/png;base64,iVBORw0KGgo="}'),
        ("png-sig-only", b"\x89PNG\r\n\x1a\n"),
        ("gif-sig-only", b"GIF89a"),
        ("jpeg-soi-only", b"\xff\xd8\xff"),
        ("riff-not-webp", b"RIFF\x10\0\0\0WAVEfmt " + rng.randbytes(8)),
        ("elf", b"\x7fELF\x02\x01\x01" + rng.randbytes(100)),
        ("utf16-text", "not an image".encode("utf-16")),
    ]


def image_cases(rng: random.Random) -> list[Case]:
    cases: list[Case] = []
    originals: dict[str, bytes] = {}
    for fmt in FORMATS:
        im = base_image(rng)
        kwargs: dict[str, Any] = {"quality": 80} if fmt in ("JPEG", "WEBP") else {}
        data = encode(im, fmt, **kwargs)
        originals[fmt] = data
        cases.append(Case(f"{fmt.lower()}-valid", "image", "accept", data))
        for label, cut in truncations(data, rng, 12):
            cases.append(Case(f"{fmt.lower()}-trunc-{label}", "image", "either", cut))
        for label, bad in corruptions(data, rng, 16):
            cases.append(Case(f"{fmt.lower()}-{label}", "image", "either", bad))

    bombs: list[tuple[str, bytes]] = [
        ("png-100k", png_declared(100_000, 100_000)),
        ("png-max-u31", png_declared(2**31 - 1, 2**31 - 1)),
        ("png-wide", png_declared(2**31 - 1, 64)),
        ("png-16bit-rgba-30k", png_declared(30_000, 30_000, bit_depth=16, color=6)),
        ("png-zlib-12k", png_zlib_bomb(12_000, 12_000)),
        ("gif-65k", gif_declared(65_535, 65_535)),
        ("gif-wide", gif_declared(65_535, 2_000)),
        ("bmp-50k", bmp_declared(50_000, 50_000)),
        ("bmp-topdown-50k", bmp_declared(50_000, -50_000)),
        ("tiff-100k", tiff_declared(100_000, 100_000)),
        ("tiff-wide", tiff_declared(4_000_000_000, 100)),
        ("jpeg-65k", jpeg_declared(65_500, 65_500, rng)),
        ("jpeg-wide", jpeg_declared(65_500, 2_000, rng)),
        ("webp-16m", webp_declared(16_000_000, 16_000_000)),
        ("webp-16k", webp_declared(16_383, 16_383)),
    ]
    for label, data in bombs:
        too_big = r"too large|the limit is"
        cases.append(Case(f"bomb-{label}", "image", "refuse", data, must_say=too_big))
        cases.append(Case(f"bomb-{label}-small-limit", "image", "refuse", data, max_pixels=SMALL_LIMIT, must_say=too_big))

    # Real pixels at and past a pixel limit and the minimum side (one format each, rotating).
    sizes: list[tuple[str, tuple[int, int], int, Expect]] = [
        ("at-limit", (1000, 1000), SMALL_LIMIT, "accept"),
        ("past-limit", (1001, 1000), SMALL_LIMIT, "refuse"),
        ("past-limit-tall", (100, 10_001), SMALL_LIMIT, "refuse"),
        ("min-side", (64, 64), 100_000_000, "accept"),
        ("below-min-side", (63, 400), 100_000_000, "refuse"),
        ("one-pixel", (1, 1), 100_000_000, "refuse"),
        ("one-row", (4000, 1), 100_000_000, "refuse"),
        ("extreme-aspect", (64, 8000), 100_000_000, "accept"),
    ]
    for index, (label, size, limit, expect) in enumerate(sizes):
        fmt = FORMATS[index % len(FORMATS)]
        if fmt == "WEBP" and max(size) > 16383:
            fmt = "PNG"
        im = Image.new("RGB", size, (index * 30 % 256, 90, 160))
        reason = r"the limit is" if "limit" in label else r"at least 64x64"
        cases.append(Case(f"size-{label}-{fmt.lower()}", "image", expect, encode(im, fmt), max_pixels=limit, must_say=reason))

    for label, data in wrong_types(rng):
        cases.append(Case(f"type-{label}", "image", "refuse", data, must_say=r"PNG, JPEG, WebP, GIF, BMP or TIFF"))

    for n in (1, 2, 7, 64, 1024, 65_536):
        cases.append(Case(f"zeros-{n}", "image", "refuse", b"\0" * n))
        cases.append(Case(f"ff-{n}", "image", "refuse", b"\xff" * n))

    # Unusual but valid images must be handled.
    unusual: list[tuple[str, bytes]] = [
        ("png-rgba", encode(base_image(rng).convert("RGBA"), "PNG")),
        ("png-16bit-grey", encode(base_image(rng).convert("I;16"), "PNG")),
        ("png-palette-transparent", encode(base_image(rng).convert("P"), "PNG", transparency=0)),
        ("jpeg-cmyk", encode(base_image(rng).convert("CMYK"), "JPEG")),
        ("jpeg-grey", encode(base_image(rng).convert("L"), "JPEG")),
        ("gif-animated", encode(base_image(rng), "GIF", save_all=True, append_images=[base_image(rng)], duration=100)),
        ("webp-animated", encode(base_image(rng), "WEBP", save_all=True, append_images=[base_image(rng)], duration=100)),
        ("tiff-deflate", encode(base_image(rng), "TIFF", compression="tiff_adobe_deflate")),
        ("bmp-1bit", encode(base_image(rng).convert("1"), "BMP")),
        ("tiff-float", encode(base_image(rng).convert("F"), "TIFF")),
    ]
    for label, data in unusual:
        cases.append(Case(f"unusual-{label}", "image", "accept", data))

    # Random bytes, some behind a real signature, fill the image budget.
    signatures = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\0", b"MM\0*", b"RIFF\0\0\0\0WEBPVP8 "]
    index = 0
    while len(cases) < IMAGE_CASES:
        sig = signatures[index % len(signatures)]
        data = sig + rng.randbytes(rng.choice((3, 50, 500, 5000, 50_000)))
        cases.append(Case(f"random-{index}-sig{index % len(signatures)}", "image", "refuse", data))
        index += 1
    return cases[:IMAGE_CASES]


# ----------------------------------------------------------------------------- options


def _bound_values(spec: Any) -> list[tuple[str, Any, Expect]]:
    values: list[tuple[str, Any, Expect]] = []
    if spec.type in ("int", "float"):
        step = 1 if spec.type == "int" else 1e-6
        if spec.min is not None:
            values += [("min", spec.min, "accept"), ("below-min", spec.min - step, "refuse")]
        if spec.max is not None:
            values += [("max", spec.max, "accept"), ("above-max", spec.max + step, "refuse")]
    elif spec.type == "choice":
        values += [(f"choice-{c}", c, "accept") for c in spec.choices]
        values += [("choice-upper", spec.choices[0].upper(), "accept"), ("choice-unknown", "avi", "refuse")]
    return values


JUNK: list[tuple[str, Any, Expect]] = [
    ("none", None, "accept"),
    ("true", True, "refuse"),
    ("false", False, "refuse"),
    ("nan", math.nan, "refuse"),
    ("inf", math.inf, "refuse"),
    ("-inf", -math.inf, "refuse"),
    ("nan-text", "nan", "refuse"),
    ("inf-text", "Infinity", "refuse"),
    ("huge-int", 10**30, "refuse"),
    ("huge-negative", -(10**30), "refuse"),
    ("giant-int", 10**5000, "refuse"),
    ("giant-digits", "9" * 5000, "refuse"),
    ("negative", -1, "either"),
    ("empty-text", "", "refuse"),
    ("spaces", "   ", "refuse"),
    ("junk-text", "twelve", "refuse"),
    ("sql", "1; DROP TABLE jobs", "refuse"),
    ("control", "\x00\x1b[31m", "refuse"),
    ("unicode-digits", "١٢", "either"),
    ("list", [1, 2], "refuse"),
    ("dict", {"a": 1}, "refuse"),
    ("bytes", b"12", "refuse"),
    ("half", 1.5, "either"),
    ("exp-text", "1e3", "either"),
]


def option_cases(rng: random.Random) -> list[Case]:
    loaded = load_workflows(WORKFLOWS_DIR)
    workflows: list[Workflow] = list(loaded.registry)
    required: list[Case] = []
    extra: list[Case] = []
    for workflow in workflows:
        for spec in workflow.member_options:
            for label, value, expect in _bound_values(spec):
                required.append(Case(f"opt-{workflow.name}-{spec.name}-{label}", "option", expect,
                                     workflow=workflow.name, options={spec.name: value}))
            for label, value, expect in JUNK:
                if spec.type == "choice" and label == "none":
                    expect = "accept"
                elif spec.type == "choice":
                    expect = "refuse"
                extra.append(Case(f"opt-{workflow.name}-{spec.name}-{label}", "option", expect,
                                  workflow=workflow.name, options={spec.name: value}))
        for label, name in (("admin", "checkpoint"), ("unknown", "colour"), ("control-name", "fr\x00ames\n"),
                            ("unicode-name", "fräмes🎞"), ("long-name", "x" * 5000), ("path-name", "../frames")):
            required.append(Case(f"opt-{workflow.name}-name-{label}", "option", "refuse",
                                 workflow=workflow.name, options={name: "1"}))
    budget = OPTION_CASES - len(required)
    if budget < 0:
        raise AssertionError(f"{len(required)} required option cases exceed the budget of {OPTION_CASES}")
    return required + rng.sample(extra, budget)


# ----------------------------------------------------------------------------- names


NAMES = [
    "../../etc/passwd", "..\\..\\windows\\system32\\config", "/absolute/path.png", "C:\\Users\\me\\cat.png",
    "a/b/c", "..", ".", "", " ", "name with spaces.png", "cat.png\x00.exe", "line\nbreak", "tab\there",
    "\x1b[2Jclear", "\r\rcarriage", "emoji🐱.png", "ünïcödé.png", "日本語の画像.png", "RTL\u202egnp.exe",
    "zero\u200bwidth", "CON", "NUL.png", "aux", "file:///etc/passwd", "http://evil/x.png", "%2e%2e%2fescape",
    "$(rm -rf /)", "`id`", "a" * 5000, "-rf", "*.png", "?", "name;rm", "<script>", "\"quoted\"", "'single'",
    "a|b", "\\\\server\\share", "~/home", "..%c0%af", "\ufeffbom", "\U0010ffff", "\ud7ff", "x\x7fdel",
    "COM1.png", "trailing.dot.", "trailing-space ", ".hidden", "__init__", "job_123-ok",
]


def name_cases() -> list[Case]:
    return [Case(f"name-{i}", "name", "accept", name=name) for i, name in enumerate(NAMES[:NAME_CASES])]


def generate_cases(seed: int = 20240901) -> list[Case]:
    """Exactly :data:`TOTAL` cases, identical for the same ``seed``."""
    rng = random.Random(seed)
    cases = image_cases(rng) + option_cases(rng) + name_cases()
    if len(cases) != TOTAL:
        raise AssertionError(f"generator made {len(cases)} cases, expected {TOTAL}")
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise AssertionError("case ids are not unique")
    return cases
