"""Content safety: find nudity in input images and generated videos, and decide what to do.

No discord here, and nothing happens on import (the model is loaded by ``await detector.load()``).

* :mod:`bot.safety.labels`: NudeNet's 18 labels, each in one group (explicit, suggestive, ignored).
* :mod:`bot.safety.verdict`: ``Detection``/``Detections``, ``Thresholds``, ``Level``, ``Verdict`` and
  :func:`~bot.safety.verdict.judge` (pure).
* :mod:`bot.safety.policy`: ``Mode``, ``Stage``, ``Decision`` and :func:`~bot.safety.policy.decide` (pure).
* :mod:`bot.safety.detector`: the ``SafetyDetector`` interface (RGB arrays in), the input check.
* :mod:`bot.safety.nudenet_detector`: ``NudeNetDetector``, NudeNet 3.4 on our own ONNX Runtime session.
* :mod:`bot.safety.result_check`: sample first/middle/last frames of a video and judge them together.
* :mod:`bot.safety.errors`: ``SafetyError``, ``SafetyUnavailable``, ``UnreadableMedia``.
* :mod:`bot.safety.gate`: ``SafetyGate``, where the bot's jobs meet all of the above and the guild's
  mode (import it from there: it needs the bot's storage, so it is not re-exported here).
* :mod:`bot.safety.guild_rules`: a guild's stored mode and thresholds (defaults when missing or
  invalid), the rule a refusal names, and re-judging an earlier job's stored input scores.
* :mod:`bot.safety.messages`: every safety text members and moderators read, and the rules they name.
"""

from bot.safety.detector import (
    RGBArray,
    SafetyDetector,
    check_input,
    check_input_async,
    decode_image,
    detect_async,
    to_rgb_array,
)
from bot.safety.errors import SafetyError, SafetyUnavailable, UnreadableMedia
from bot.safety.labels import LABEL_GROUPS, NUDENET_LABELS, LabelGroup, group_of
from bot.safety.nudenet_detector import NudeNetDetector, packaged_model_path
from bot.safety.policy import DEFAULT_MODE, Decision, Mode, Stage, decide, effective_mode, needs_check, strict_forced
from bot.safety.result_check import FrameDetections, ResultCheck, SampledFrame, check_result, check_result_async, sample_frames
from bot.safety.verdict import SCORE_FLOOR, Box, Detection, Detections, Level, Thresholds, Verdict, judge

__all__ = [
    "DEFAULT_MODE",
    "LABEL_GROUPS",
    "NUDENET_LABELS",
    "SCORE_FLOOR",
    "Box",
    "Decision",
    "Detection",
    "Detections",
    "FrameDetections",
    "LabelGroup",
    "Level",
    "Mode",
    "NudeNetDetector",
    "RGBArray",
    "ResultCheck",
    "SafetyDetector",
    "SafetyError",
    "SafetyUnavailable",
    "SampledFrame",
    "Stage",
    "Thresholds",
    "UnreadableMedia",
    "Verdict",
    "check_input",
    "check_input_async",
    "check_result",
    "check_result_async",
    "decide",
    "decode_image",
    "detect_async",
    "effective_mode",
    "group_of",
    "judge",
    "needs_check",
    "packaged_model_path",
    "sample_frames",
    "strict_forced",
    "to_rgb_array",
]
