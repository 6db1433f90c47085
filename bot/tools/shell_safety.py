"""``--safety`` of ``python -m bot animate``: the bot's content-safety check on the shell's input and result.

Owns :class:`ShellSafety`: loading the detector (NudeNet unless one is given), judging the prepared
input and the original result file with the bot's thresholds and policy table (the shell counts as
an age-restricted channel), turning a refusal or withheld result into a :class:`ShellError`, and
the verdict line the command prints. The rest of the command is :mod:`bot.tools.shell_animate`.
"""

from __future__ import annotations

from pathlib import Path

from bot.safety.detector import SafetyDetector, check_input_async
from bot.safety.errors import SafetyError, SafetyUnavailable
from bot.safety.policy import Decision, Mode, Stage, decide
from bot.safety.result_check import check_result_async
from bot.safety.verdict import Thresholds, Verdict
from bot.tools.shell_errors import ShellError

__all__ = ["ShellSafety"]


class ShellSafety:
    """``--safety``: the bot's checks on the shell's input and result (see the module docstrings here and of :mod:`bot.tools.shell_animate`)."""

    def __init__(self, mode: Mode, detector: SafetyDetector | None = None) -> None:
        self.mode = mode
        self.detector = detector
        self.thresholds = Thresholds()
        self.verdicts: list[str] = []

    async def load(self) -> None:
        if self.mode is Mode.OFF:
            return
        if self.detector is None:
            from bot.safety.gate import default_detector

            self.detector = default_detector()
        try:
            await self.detector.load()
        except SafetyUnavailable as exc:
            raise ShellError(f"the safety detector cannot load: {exc.reason} (--safety off animates without checks)") from exc

    def _decide(self, verdict: Verdict, stage: Stage) -> Decision:
        return decide(self.mode, verdict, stage=stage, age_restricted_channel=True, forced_strict=False)

    def _note(self, what: str, verdict: Verdict, decision: Decision) -> None:
        text = f"{what} {verdict.summary()}"
        if decision is Decision.ALLOW_AS_SPOILER:
            text += " (posted as a spoiler in a channel)"
        elif verdict.explicit and decision is Decision.ALLOW:
            text += " (allowed in age-restricted channels only)"
        self.verdicts.append(text)

    async def check_input(self, png: bytes) -> None:
        if self.mode is Mode.OFF or self.detector is None:
            return
        try:
            verdict = await check_input_async(self.detector, png, self.thresholds)
        except SafetyError as exc:
            raise ShellError(f"the input could not be checked: {exc.reason}") from exc
        decision = self._decide(verdict, Stage.INPUT)
        if decision is Decision.REFUSE:
            raise ShellError(f"input refused by the safety check ({self.mode.value}): {verdict.summary()}")
        self._note("input", verdict, decision)

    async def check_result(self, path: Path) -> None:
        if self.mode is Mode.OFF or self.detector is None:
            return
        try:
            checked = await check_result_async(self.detector, path, self.thresholds)
        except SafetyError as exc:
            raise ShellError(f"the result could not be checked: {exc.reason}; nothing was written") from exc
        decision = self._decide(checked.verdict, Stage.RESULT)
        if decision is Decision.WITHHOLD:
            raise ShellError(f"result withheld by the safety check ({self.mode.value}): {checked.verdict.summary()} "
                             f"(frames {', '.join(str(f.index) for f in checked.frames)} of {checked.total_frames}); "
                             "nothing was written")
        self._note(f"result ({len(checked.frames)} of {checked.total_frames} frames)", checked.verdict, decision)

    def summary(self) -> str:
        """``safety (strict): input clean; result (3 of 14 frames) clean``"""
        if self.mode is Mode.OFF:
            return "safety (off): not checked"
        return f"safety ({self.mode.value}): " + "; ".join(self.verdicts)
