"""NudeNet 3.4's detector on our own ONNX Runtime session.

:class:`NudeNetDetector` loads ``320n.onnx``, the model shipped inside the ``nudenet`` wheel
(nothing is downloaded), into its own ``onnxruntime.InferenceSession``: CPU only, with capped
intra-op and inter-op threads so it shares a small machine with the rest of the bot.

Pre- and post-processing reproduce ``nudenet/nudenet.py`` (3.4.2) exactly; a test compares
the output with ``nudenet.NudeDetector().detect`` on real photos:

* NudeNet reads a file as BGR and swaps it twice (``cvtColor(RGBA2BGR)`` on 3 channels, then
  ``blobFromImage(swapRB=True)``), so the network gets **BGR**. We start from RGB and do the
  second swap only.
* Pad right and bottom with black to a square, ``cv2.dnn.blobFromImage`` to 320x320 (bilinear),
  scale by 1/255, NCHW float32.
* Output ``(1, 4 + 18, N)``: per candidate a centre box and 18 class scores. Keep candidates
  whose best score is >= 0.2; box to the image's pixels (same float32 arithmetic, vectorised
  rather than NudeNet's Python loop); clip to the image.
* ``cv2.dnn.NMSBoxes(boxes, scores, 0.25, 0.45)`` across all classes, which also drops every
  score <= 0.25; boxes truncated to ints.

Load errors raise :class:`SafetyUnavailable` with a one-line reason. ``onnxruntime`` and ``cv2``
are imported by :meth:`NudeNetDetector.load_sync`, not on import.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import threading
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from bot.safety.detector import RGBArray, check_rgb_array
from bot.safety.errors import SafetyUnavailable
from bot.safety.labels import NUDENET_LABELS
from bot.safety.verdict import Box, Detection, Detections

MODEL_FILE: Final = "320n.onnx"
INPUT_SIZE: Final = 320
CANDIDATE_FLOOR: Final = 0.2  # NudeNet keeps candidates scoring at least this...
NMS_SCORE_THRESHOLD: Final = 0.25  # ...then its NMS drops every score <= this
NMS_IOU_THRESHOLD: Final = 0.45
DEFAULT_THREADS: Final = 1


def packaged_model_path() -> Path:
    """Where the installed ``nudenet`` package keeps ``320n.onnx`` (found without importing nudenet).

    Raises :class:`SafetyUnavailable` when nudenet is not installed or the file is missing.
    """
    try:
        spec = importlib.util.find_spec("nudenet")
    except (ImportError, ValueError) as exc:
        raise SafetyUnavailable(f"nudenet cannot be found: {exc}") from exc
    if spec is None or not spec.submodule_search_locations:
        raise SafetyUnavailable("nudenet is not installed (pip install 'nudenet>=3.4,<3.5')")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise SafetyUnavailable(f"NudeNet's model file {MODEL_FILE} is missing from {path.parent}")
    return path


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


class NudeNetDetector:
    """NudeNet 3.4's ``320n`` body-part detector; implements :class:`~bot.safety.detector.SafetyDetector`.

    ``model_path``: an ONNX file; default: the one in the installed nudenet package.
    ``intra_op_threads`` / ``inter_op_threads``: ONNX Runtime's thread caps (default 1 each;
    2 intra-op threads is faster per image on an idle 2-core machine, 1 leaves a core to the bot).
    ``spin``: let ONNX Runtime's idle worker threads spin (off: they would burn CPU between images).
    """

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        intra_op_threads: int = DEFAULT_THREADS,
        inter_op_threads: int = DEFAULT_THREADS,
        spin: bool = False,
    ) -> None:
        if intra_op_threads < 1 or inter_op_threads < 1:
            raise ValueError("thread counts must be at least 1")
        self.model_path = Path(model_path) if model_path is not None else None
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.spin = spin
        self._session: Any = None
        self._input_name = ""
        self._cv2: Any = None
        self._name = "nudenet (not loaded)"
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"NudeNetDetector({self._name!r}, threads={self.intra_op_threads}/{self.inter_op_threads})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def loaded(self) -> bool:
        return self._session is not None

    async def load(self) -> None:
        """:meth:`load_sync` in a worker thread."""
        await asyncio.to_thread(self.load_sync)

    def load_sync(self) -> None:
        """Build the ONNX Runtime session and run it once on a blank image. Blocking; idempotent.

        Raises :class:`SafetyUnavailable` (one line) when a package is missing, the model file is
        missing or unreadable, or the model is not the 18-label detector we expect.
        """
        with self._load_lock:
            if self._session is not None:
                return
            try:
                import cv2
                import onnxruntime
            except ImportError as exc:
                raise SafetyUnavailable(f"{exc.name or 'a package'} is not installed: {exc}") from exc
            path = self.model_path if self.model_path is not None else packaged_model_path()
            if not path.is_file():
                raise SafetyUnavailable(f"model file not found: {path}")
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.intra_op_threads
            options.inter_op_num_threads = self.inter_op_threads
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            options.log_severity_level = 3  # errors only
            spin = "1" if self.spin else "0"
            options.add_session_config_entry("session.intra_op.allow_spinning", spin)
            options.add_session_config_entry("session.inter_op.allow_spinning", spin)
            try:
                session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
                inputs = session.get_inputs()
                if len(inputs) != 1 or len(inputs[0].shape) != 4:
                    raise ValueError(f"expected one NCHW image input, got {[i.shape for i in inputs]}")
                input_name = str(inputs[0].name)
                blank = np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
                output = session.run(None, {input_name: blank})[0]
            except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
                first_line = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
                raise SafetyUnavailable(f"cannot load the NudeNet model {path.name}: {first_line[:300]}") from exc
            expected = 4 + len(NUDENET_LABELS)
            if output.ndim != 3 or output.shape[1] != expected:
                raise SafetyUnavailable(
                    f"{path.name} is not NudeNet 3.4's detector: output shape {output.shape}, expected (1, {expected}, N)"
                )
            self._cv2 = cv2
            self._input_name = input_name
            self._name = f"nudenet {_version('nudenet')} {path.stem} (onnxruntime {onnxruntime.__version__})"
            self._session = session

    def detect(self, image: RGBArray) -> Detections:
        """NudeNet's detections for an RGB array, highest score first. Blocking; thread-safe."""
        if self._session is None:
            raise SafetyUnavailable("the NudeNet detector is not loaded (call load() first)")
        image = check_rgb_array(image)
        height, width = int(image.shape[0]), int(image.shape[1])
        blob, x_pad, y_pad = self._preprocess(image)
        with self._run_lock:  # one inference at a time: the thread caps then bound the CPU used
            output = self._session.run(None, {self._input_name: blob})[0]
        items = self._postprocess(np.asarray(output), width, height, x_pad, y_pad)
        return Detections(items=items, width=width, height=height)

    def _preprocess(self, rgb: RGBArray) -> tuple[npt.NDArray[np.float32], int, int]:
        cv2 = self._cv2
        height, width = rgb.shape[:2]
        side = max(height, width)
        x_pad, y_pad = side - width, side - height
        padded = cv2.copyMakeBorder(np.ascontiguousarray(rgb), 0, y_pad, 0, x_pad, cv2.BORDER_CONSTANT)
        blob = cv2.dnn.blobFromImage(padded, 1 / 255.0, (INPUT_SIZE, INPUT_SIZE), (0, 0, 0), swapRB=True, crop=False)
        return np.asarray(blob, dtype=np.float32), x_pad, y_pad

    def _postprocess(
        self, output: npt.NDArray[np.float32], width: int, height: int, x_pad: int, y_pad: int
    ) -> tuple[Detection, ...]:
        rows = np.transpose(np.squeeze(output, axis=0))  # (N, 4 + classes)
        class_scores = rows[:, 4:]
        best = class_scores.max(axis=1)
        keep = best >= CANDIDATE_FLOOR
        if not keep.any():
            return ()
        rows, scores = rows[keep], best[keep]
        class_ids = class_scores[keep].argmax(axis=1)
        cx, cy, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        # The same float32 operations, in the same order, as NudeNet's per-row loop.
        x = cx - w / 2
        y = cy - h / 2
        x = x * (width + x_pad) / INPUT_SIZE
        y = y * (height + y_pad) / INPUT_SIZE
        w = w * (width + x_pad) / INPUT_SIZE
        h = h * (height + y_pad) / INPUT_SIZE
        x = np.maximum(np.minimum(x, width), 0)
        y = np.maximum(np.minimum(y, height), 0)
        w = np.minimum(w, width - x)
        h = np.minimum(h, height - y)
        boxes = np.stack([x, y, w, h], axis=1)
        indices = self._cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), NMS_SCORE_THRESHOLD, NMS_IOU_THRESHOLD)
        found = []
        for index in np.asarray(indices, dtype=np.int64).reshape(-1):
            bx, by, bw, bh = (int(v) for v in boxes[index])
            found.append(
                Detection(
                    label=NUDENET_LABELS[int(class_ids[index])],
                    score=float(scores[index]),
                    box=Box(bx, by, bw, bh),
                )
            )
        return tuple(found)
