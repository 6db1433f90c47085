"""Node implementations of the ComfyUI test server.

IMAGE values are lists of Pillow RGB images (one per frame). The five SVD model nodes are
stand-ins with the recorded signatures: the loader returns tokens, the conditioning node
remembers the init image, KSampler ticks once per step, and VAEDecode builds a slow zoom of
the init image whose speed follows ``motion_bucket_id`` (the seed nudges it, so a different
seed gives different bytes). Save nodes write real files (Pillow for GIF/WebP/PNG, PyAV for
MP4), always in a thread.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, ImageFilter, ImageOps, PngImagePlugin

logger = logging.getLogger(__name__)

SMALL_SIDE = 128


class NodeFailure(Exception):
    """A node failed at run time; carries the ComfyUI-style exception type name."""

    def __init__(self, message: str, exception_type: str, traceback: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.exception_type = exception_type
        self.traceback = traceback


class Context(Protocol):
    """What a node may use while it runs."""

    node_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    full_size: bool
    load_time: float
    input_dir: Path
    output_dir: Path

    async def tick(self, value: int, maximum: int, megapixel_frames: float = 0.0) -> None: ...

    async def preview(self, data: bytes, image_type: str) -> None: ...


@dataclass
class Video:
    """The VIDEO value of CreateVideo."""

    frames: list[Image.Image]
    fps: float


@dataclass
class Latent:
    """The SVD stand-in latent: enough to render frames in VAEDecode."""

    init: Image.Image
    width: int
    height: int
    frames: int
    motion: int
    fps: int
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


def render_size(width: int, height: int, full_size: bool) -> tuple[int, int]:
    """The size actually rendered: the request, or at most SMALL_SIDE on the long side (even)."""
    width, height = max(int(width), 2), max(int(height), 2)
    if not full_size and max(width, height) > SMALL_SIDE:
        scale = SMALL_SIDE / max(width, height)
        width, height = round(width * scale), round(height * scale)
    return max(2, width - width % 2), max(2, height - height % 2)


def _counter(folder: Path, base: str, trailing: str) -> int:
    pattern = re.compile(re.escape(base) + r"_(\d{5})" + re.escape(trailing) + r"\.")
    best = 0
    if folder.is_dir():
        for entry in folder.iterdir():
            m = pattern.match(entry.name)
            if m:
                best = max(best, int(m.group(1)))
    return best + 1


def _split_prefix(output_dir: Path, prefix: str) -> tuple[Path, str, str]:
    prefix = prefix.replace("\\", "/")
    subfolder, _, base = prefix.rpartition("/")
    folder = output_dir / subfolder if subfolder else output_dir
    folder.mkdir(parents=True, exist_ok=True)
    return folder, subfolder, base or "ComfyUI"


def resolve_input_path(input_dir: Path, name: str) -> Path:
    """Where an (optionally annotated, optionally sub-foldered) input name lives."""
    base = input_dir
    if name.endswith("]") and " [" in name:
        name, _, kind = name[:-1].rpartition(" [")
        if kind in ("output", "temp"):
            base = input_dir.parent / kind
    return base / name


# ---------------------------------------------------------------- encoders (run in a thread)


def encode_gif(frames: list[Image.Image], fps: float, path: Path, loop: int) -> None:
    durations = max(1, round(1000 / max(fps, 0.01)))
    frames[0].save(
        path, save_all=True, append_images=frames[1:], duration=durations, loop=loop, optimize=False
    )


def encode_webp(frames: list[Image.Image], fps: float, path: Path, lossless: bool, quality: int) -> None:
    duration = max(1, round(1000 / max(fps, 0.01)))
    frames[0].save(
        path,
        save_all=True,
        append_images=frames[1:],
        duration=duration,
        lossless=lossless,
        quality=quality,
        method=0,
        loop=0,
    )


def encode_apng(frames: list[Image.Image], fps: float, path: Path, compress_level: int) -> None:
    duration = max(1, round(1000 / max(fps, 0.01)))
    frames[0].save(
        path,
        save_all=True,
        append_images=frames[1:],
        duration=duration,
        compress_level=compress_level,
        loop=0,
    )


def encode_mp4(frames: list[Image.Image], fps: float, path: Path, crf: int = 23) -> None:
    import av

    rate = Fraction(fps).limit_denominator(1000) if fps > 0 else Fraction(8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast"}
        for img in frames:
            frame = av.VideoFrame.from_image(img)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def workflow_png(frame: Image.Image, prompt: dict[str, Any], extra: dict[str, Any], path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    if "extra_pnginfo" in extra:
        info.add_text("workflow", json.dumps(extra["extra_pnginfo"]))
    frame.save(path, pnginfo=info, compress_level=1)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=70)
    return buf.getvalue()


# ---------------------------------------------------------------- nodes

NodeResult = tuple[tuple[Any, ...], dict[str, Any] | None]
NodeFn = Callable[[Context, dict[str, Any]], Awaitable[NodeResult]]


def _load_image(path: Path) -> tuple[Image.Image, Image.Image]:
    try:
        with Image.open(path) as img:
            img.load()
            rgba = ImageOps.exif_transpose(img).convert("RGBA")
    except Exception as ex:  # noqa: BLE001 - surfaced as a ComfyUI-style execution_error
        kind = type(ex).__module__.split(".")[0] + "." + type(ex).__name__
        if kind.startswith("builtins."):
            kind = type(ex).__name__
        raise NodeFailure(
            f"{ex}\n",
            kind,
            [
                '  File "execution.py", line 518, in execute\n    <source line omitted>\n',
                '  File "execution.py", line 329, in get_output_data\n    <source line omitted>\n',
                '  File "execution.py", line 303, in _async_map_node_over_list\n    <source line omitted>\n',
                '  File "execution.py", line 291, in process_inputs\n    <source line omitted>\n',
                '  File "nodes.py", line 1664, in load_image\n    <source line omitted>\n',
                '  File "node_helpers.py", line 31, in pillow\n    <source line omitted>\n',
                '  File "Image.py", line 3730, in open\n    <source line omitted>\n',
            ],
        ) from ex
    return rgba.convert("RGB"), rgba.getchannel("A")


async def load_image(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    path = resolve_input_path(ctx.input_dir, str(inputs["image"]))
    image, mask = await asyncio.to_thread(_load_image, path)
    if not ctx.full_size:
        image.thumbnail((SMALL_SIDE * 4, SMALL_SIDE * 4))
    return ([image], [mask]), None


async def image_scale(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    size = render_size(inputs["width"] or 512, inputs["height"] or 512, ctx.full_size)

    def run() -> list[Image.Image]:
        if inputs.get("crop") == "center":
            return [ImageOps.fit(i, size) for i in inputs["image"]]
        return [i.resize(size, Image.Resampling.BILINEAR) for i in inputs["image"]]

    return (await asyncio.to_thread(run),), None


async def repeat_image_batch(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    return (list(inputs["image"]) * int(inputs["amount"]),), None


async def image_add_noise(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    rng = random.Random(int(inputs["seed"]))
    strength = float(inputs["strength"]) * 0.3

    def run() -> list[Image.Image]:
        out = []
        for img in inputs["image"]:
            noise = Image.frombytes("RGB", img.size, rng.randbytes(img.size[0] * img.size[1] * 3))
            out.append(Image.blend(img, noise, strength))
        return out

    return (await asyncio.to_thread(run),), None


async def image_blur(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    radius = float(inputs["sigma"])

    def run() -> list[Image.Image]:
        return [i.filter(ImageFilter.GaussianBlur(radius)) for i in inputs["image"]]

    return (await asyncio.to_thread(run),), None


async def image_from_batch(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    start = int(inputs["batch_index"])
    images = inputs["image"]
    start = min(start, len(images) - 1)
    return (images[start : start + int(inputs["length"])],), None


async def checkpoint_loader(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    if ctx.load_time > 0:
        await asyncio.sleep(ctx.load_time)  # loading the model (cached afterwards)
    token = {"ckpt": inputs["ckpt_name"]}
    return ({"model": token}, {"clip_vision": token}, {"vae": token}), None


async def svd_conditioning(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    size = render_size(inputs["width"], inputs["height"], ctx.full_size)
    first = inputs["init_image"][0]
    init = await asyncio.to_thread(ImageOps.fit, first, size)
    latent = Latent(
        init=init,
        width=size[0],
        height=size[1],
        frames=int(inputs["video_frames"]),
        motion=int(inputs["motion_bucket_id"]),
        fps=int(inputs["fps"]),
        extras={"requested_pixels": int(inputs["width"]) * int(inputs["height"])},
    )
    cond = {"motion": latent.motion, "fps": latent.fps}
    return (cond, dict(cond), latent), None


async def video_linear_cfg(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    return (inputs["model"],), None


async def ksampler(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    steps = int(inputs["steps"])
    latent = inputs["latent_image"]
    work = latent.frames * latent.extras.get("requested_pixels", 0) / 1e6 if isinstance(latent, Latent) else 0.0
    for step in range(1, steps + 1):
        await ctx.tick(step, steps, work)
        if isinstance(latent, Latent) and step % 5 == 0:
            preview = await asyncio.to_thread(lambda: _jpeg(latent.init.resize((64, max(2, 64 * latent.height // latent.width)))))
            await ctx.preview(preview, "image/jpeg")
    if isinstance(latent, Latent):
        latent = Latent(**{**latent.__dict__, "seed": int(inputs["seed"])})
    return (latent,), None


def _zoom_frames(latent: Latent) -> list[Image.Image]:
    w, h = latent.init.size
    speed = 0.002 + 0.0004 * latent.motion  # per frame; motion 127 -> about 5 % a frame
    rng = random.Random(latent.seed)
    dx = rng.uniform(-0.01, 0.01) * w
    dy = rng.uniform(-0.01, 0.01) * h
    frames = []
    for i in range(latent.frames):
        zoom = 1.0 + speed * i
        cw, ch = w / zoom, h / zoom
        cx = min(max(w / 2 + dx * min(i, 1), cw / 2), w - cw / 2)
        cy = min(max(h / 2 + dy * min(i, 1), ch / 2), h - ch / 2)
        box = (cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2)
        frame = latent.init.resize((w, h), Image.Resampling.BILINEAR, box=box)
        if i == 0:
            # the seed still shows on the first frame, one pixel's worth
            px = frame.getpixel((0, 0))
            frame.putpixel((0, 0), tuple((c + latent.seed) % 256 for c in px))  # type: ignore[arg-type]
        frames.append(frame)
    return frames


async def vae_decode(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    latent = inputs["samples"]
    if not isinstance(latent, Latent):
        raise NodeFailure("VAEDecode stand-in needs an SVD latent\n", "RuntimeError", [])
    return (await asyncio.to_thread(_zoom_frames, latent),), None


async def vhs_video_combine(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    images: list[Image.Image] = list(inputs["images"])
    if inputs.get("pingpong"):
        images = images + images[-2:0:-1]
    fmt = str(inputs["format"])
    fps = float(inputs["frame_rate"])
    for i in range(1, len(images) + 1):
        await ctx.tick(i, len(images))
    folder, subfolder, base = _split_prefix(ctx.output_dir, str(inputs["filename_prefix"]))
    counter = _counter(folder, base, "")
    ext = {"image/gif": "gif", "image/webp": "webp"}.get(fmt, "mp4")
    name = f"{base}_{counter:05}.{ext}"
    png_name = f"{base}_{counter:05}.png"
    path = folder / name

    def write() -> None:
        workflow_png(images[0], ctx.prompt, ctx.extra_data, folder / png_name)
        if ext == "gif":
            encode_gif(images, fps, path, int(inputs.get("loop_count", 0)))
        elif ext == "webp":
            encode_webp(images, fps, path, bool(inputs.get("lossless", True)), 80)
        else:
            encode_mp4(images, fps, path, int(inputs.get("crf", 19)))

    await asyncio.to_thread(write)
    item = {
        "filename": name,
        "subfolder": subfolder,
        "type": "output",
        "format": fmt if ext != "mp4" else ("video/h264-mp4" if fmt.endswith("mp4") else fmt),
        "frame_rate": fps,
        "workflow": png_name,
        "fullpath": str(path),
    }
    return ((True, [str(folder / png_name), str(path)]),), {"gifs": [item]}


async def _save_core(
    ctx: Context, prefix: str, ext: str, writer: Callable[[Path], None], animated: bool
) -> dict[str, Any]:
    folder, subfolder, base = _split_prefix(ctx.output_dir, prefix)
    counter = _counter(folder, base, "_")
    name = f"{base}_{counter:05}_.{ext}"
    await asyncio.to_thread(writer, folder / name)
    ui: dict[str, Any] = {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}]}
    if animated:
        ui["animated"] = [True]
    return ui


async def save_animated_webp(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    frames = inputs["images"]
    ui = await _save_core(
        ctx,
        str(inputs["filename_prefix"]),
        "webp",
        lambda p: encode_webp(frames, float(inputs["fps"]), p, bool(inputs["lossless"]), int(inputs["quality"])),
        True,
    )
    return (), ui


async def save_animated_png(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    frames = inputs["images"]
    ui = await _save_core(
        ctx,
        str(inputs["filename_prefix"]),
        "png",
        lambda p: encode_apng(frames, float(inputs["fps"]), p, int(inputs["compress_level"])),
        True,
    )
    return (), ui


async def save_image(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    items: list[dict[str, Any]] = []
    for img in inputs["images"]:
        ui = await _save_core(
            ctx, str(inputs["filename_prefix"]), "png", lambda p, im=img: im.save(p, compress_level=1), False
        )
        items.extend(ui["images"])
    return (), {"images": items}


async def create_video(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    return (Video(frames=list(inputs["images"]), fps=float(inputs["fps"])),), None


async def save_video(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    video: Video = inputs["video"]
    ui = await _save_core(
        ctx, str(inputs["filename_prefix"]), "mp4", lambda p: encode_mp4(video.frames, video.fps, p), True
    )
    return (), ui


async def save_image_websocket(ctx: Context, inputs: dict[str, Any]) -> NodeResult:
    images = inputs["images"]
    for i, img in enumerate(images):
        await ctx.tick(i, len(images))
        await ctx.preview(await asyncio.to_thread(_png, img), "image/png")
    return (), None


NODES: dict[str, NodeFn] = {
    "LoadImage": load_image,
    "ImageScale": image_scale,
    "RepeatImageBatch": repeat_image_batch,
    "ImageAddNoise": image_add_noise,
    "ImageBlur": image_blur,
    "ImageFromBatch": image_from_batch,
    "ImageOnlyCheckpointLoader": checkpoint_loader,
    "SVD_img2vid_Conditioning": svd_conditioning,
    "VideoLinearCFGGuidance": video_linear_cfg,
    "KSampler": ksampler,
    "VAEDecode": vae_decode,
    "VHS_VideoCombine": vhs_video_combine,
    "SaveAnimatedWEBP": save_animated_webp,
    "SaveAnimatedPNG": save_animated_png,
    "SaveImage": save_image,
    "CreateVideo": create_video,
    "SaveVideo": save_video,
    "SaveImageWebsocket": save_image_websocket,
}
