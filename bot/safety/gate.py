"""The safety gate: where the bot's jobs meet the detector, the guild's mode and the policy table.

One :class:`SafetyGate` is built by the wiring (:func:`bot.services.build_services`) around one
detector, and loaded once at start (:meth:`SafetyGate.load`, in a worker thread, before any job
is accepted). A detector that cannot load leaves the gate *unavailable* with its reason: that is
logged once at ERROR and from then on every check fails closed (refused or withheld) wherever the
effective mode is not ``off``. No discord here.

* **Input** (:meth:`SafetyGate.check_input`): the job service calls it right after preparing the
  image and before the job is stored or anything is uploaded (``JobService(input_check=...)``). A
  refusal raises :class:`SafetyRefused` (member-facing, names the rule, never the scores). What it
  returns is kept with the job (``Job.result_meta[SAFETY_KEY]``): the input's scores, so re-rolls
  and variations are judged again (mode, thresholds and channel of that time) without running the
  detector again, and whether the image was another member's.
* **Result** (:meth:`SafetyGate.check_result`): the Discord delivery calls it with the original
  output file and the channel's age-restricted flag, read again at delivery. A withheld result is
  recorded (:class:`~bot.storage.withheld.WithheldStore`) for moderators; the delivery then raises
  :class:`ResultWithheld`. Any later kind of result (extended or joined clips) is delivered by the
  same delivery and so goes through the same check. Its decoding and detection may start as soon
  as the file is downloaded (:meth:`SafetyGate.start_result_check`, :mod:`bot.safety.ahead`).
* Always strict, whatever the guild's mode: direct messages and another member's image
  (:func:`bot.safety.policy.strict_forced`). The facts come from the request (``JobRequest.extra``:
  :data:`AGE_RESTRICTED_KEY`, :data:`OTHERS_IMAGE_KEY`); a DM is a job without a guild.

Every refusal and withheld result is handed to the listeners (:meth:`SafetyGate.add_listener`; the
audit log) as a :class:`SafetyEvent` with who, where, the labels and scores. How a guild's stored
settings become its mode and thresholds, and which rule a refusal names, is
:mod:`bot.safety.guild_rules` (its names are re-exported here).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, Protocol, TypeVar

from bot.clock import Clock, SystemClock
from bot.errors import JobFailed, UserFacingError
from bot.jobs.models import Job
from bot.logs import log_failure
from bot.media.thumbnails import thumbnail_png
from bot.safety import messages
from bot.safety.ahead import ChecksAhead, SignedCheck, signed_check
from bot.safety.detector import RGBArray, SafetyDetector, check_input
from bot.safety.errors import SafetyUnavailable, UnreadableMedia
from bot.safety.guild_rules import GuildSafety, guild_safety, rule_for, stored_verdict
from bot.safety.guild_rules import SafetySettingsSource as SafetySettingsSource
from bot.safety.messages import Rule
from bot.safety.nudenet_detector import NudeNetDetector
from bot.safety.policy import Decision, Mode, Stage, decide, effective_mode, needs_check, strict_forced
from bot.safety.result_check import DEFAULT_SAMPLES, check_result
from bot.safety.verdict import Thresholds, Verdict
from bot.storage.withheld import WithheldResult, WithheldStore

log = logging.getLogger(__name__)
T = TypeVar("T")

#: ``JobRequest.extra`` keys the Discord layer fills: the channel is age-restricted (NSFW), and
#: the image is another member's (the "Animate image" menu on someone else's post).
AGE_RESTRICTED_KEY: Final = "age_restricted"
OTHERS_IMAGE_KEY: Final = "others_image"
#: ``Job.result_meta`` key of what the input check keeps with a job.
SAFETY_KEY: Final = "safety"

__all__ = [
    "AGE_RESTRICTED_KEY",
    "OTHERS_IMAGE_KEY",
    "SAFETY_KEY",
    "GuildSafety",
    "InputCheck",
    "InputSubject",
    "ResultJudgement",
    "ResultWithheld",
    "SafetyEvent",
    "SafetyGate",
    "SafetyListener",
    "SafetyRefused",
    "SafetyState",
    "SafetyStatus",
    "default_detector",
    "guild_safety",
    "rule_for",
]


class SafetyRefused(UserFacingError):
    """An input the safety check refused (or could not check). The message names the rule."""

    def __init__(self, rule: Rule, verdict: Verdict | None = None) -> None:
        detail = f"safety: refused ({rule.value})" + (f": {verdict.summary()}" if verdict is not None else "")
        super().__init__(messages.refused(rule), detail=detail)
        self.rule = rule
        self.verdict = verdict


class ResultWithheld(JobFailed):
    """A result the safety check withheld: the job ends with the member's private reason; its
    ``detail`` starts with :data:`bot.safety.messages.WITHHELD_DETAIL` (the status message says so)."""

    def __init__(self, rule: Rule, verdict: Verdict | None = None) -> None:
        detail = f"{messages.WITHHELD_DETAIL} ({rule.value})" + (f": {verdict.summary()}" if verdict is not None else "")
        super().__init__(messages.withheld(rule), detail=detail)
        self.rule = rule
        self.verdict = verdict


class SafetyState(StrEnum):
    NOT_LOADED = "not loaded"
    READY = "ready"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class SafetyStatus:
    """What ``/mod settings`` and the logs say about the detector."""

    state: SafetyState
    detector: str
    reason: str | None = None
    load_seconds: float | None = None

    @property
    def ready(self) -> bool:
        return self.state is SafetyState.READY


@dataclass(frozen=True)
class InputSubject:
    """What the input check is given. ``image``: the prepared image of a new job (its PNG, or its
    pixels), or the stored input file of a re-roll (read only when ``stored`` has no scores). ``request``: the
    request's ``extra`` (:data:`AGE_RESTRICTED_KEY`, :data:`OTHERS_IMAGE_KEY`). ``stored``: the
    earlier job's :data:`SAFETY_KEY` record, for re-rolls and variations."""

    user_id: int
    guild_id: int | None
    channel_id: int
    image: bytes | Path | RGBArray | None = field(default=None, repr=False)
    request: Mapping[str, Any] = field(default_factory=dict)
    stored: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ResultJudgement:
    """The result check's outcome: ``decision`` (allow, allow as a spoiler, withhold), the verdict
    (None when nothing was checked), the rule that withheld it, and the mode that applied."""

    decision: Decision
    verdict: Verdict | None
    rule: Rule | None
    mode: Mode

    @property
    def spoiler(self) -> bool:
        return self.decision is Decision.ALLOW_AS_SPOILER


@dataclass(frozen=True)
class SafetyEvent:
    """A refusal (``kind="refused"``, an input) or a withheld result (``kind="withheld"``), for the
    audit log. ``thumbnail``: a small PNG of the refused input; ``result_path``: the withheld file."""

    kind: str
    guild_id: int | None
    channel_id: int
    user_id: int
    at: float
    rule: Rule
    mode: Mode
    verdict: Verdict | None
    job_id: str | None = None
    thumbnail: bytes | None = field(default=None, repr=False)
    result_path: Path | None = None

    def details(self) -> dict[str, Any]:
        """The audit record's details (labels with scores, rule, mode)."""
        data: dict[str, Any] = {"user_id": self.user_id, "channel_id": self.channel_id, "rule": self.rule.value,
                                "mode": self.mode.value}
        if self.verdict is not None:
            data["level"] = self.verdict.level.value
            data["labels"] = [[label, round(score, 3)] for label, score in self.verdict.labels]
        return data


SafetyListener = Callable[[SafetyEvent], Awaitable[None]]


class InputCheck(Protocol):
    """What the job service calls on every new job's input (:class:`SafetyGate` implements it)."""

    async def check_input(self, subject: InputSubject) -> dict[str, Any]:
        """Raise :class:`SafetyRefused`, or return what to keep with the job (``result_meta[SAFETY_KEY]``)."""
        ...


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


async def _in_safety_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a check in the one thread every check runs in, one at a time. The detector runs one
    image at a time anyway; decoding images side by side in several threads would cost memory
    (each thread keeps its own malloc arena: a burst of 500 jobs held about 40 MB more) and the
    event loop's CPU on a small machine."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="safety")
        executor = _executor
    return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(func, *args, **kwargs))


async def _detect(what: str, check: Callable[[], Verdict]) -> tuple[Verdict | None, bool]:
    """Run ``check`` in the safety thread: (verdict, detector unavailable); no verdict when the
    ``what`` ("input", "result") could not be checked (logged, never raised)."""
    try:
        return await _in_safety_thread(check), False
    except SafetyUnavailable as exc:
        log.warning("the safety detector failed: %s", exc.reason)
        return None, True
    except (UnreadableMedia, OSError) as exc:
        log.info("the %s could not be checked: %s", what, exc)
        return None, False
    except Exception:
        log_failure(log, logging.WARNING, "the %s check failed", what)
        return None, False


def _check_input_file(detector: SafetyDetector, image: bytes | Path | RGBArray, thresholds: Thresholds) -> Verdict:
    return check_input(detector, image.read_bytes() if isinstance(image, Path) else image, thresholds)


def default_detector() -> SafetyDetector:
    """The detector ``python -m bot run``, ``doctor`` and ``animate`` use: NudeNet from its wheel."""
    return NudeNetDetector()


class SafetyGate:
    """See the module docstring. ``guilds``: the guild settings (mode, thresholds); ``withheld``:
    where withheld results are kept; ``samples``: frames the result check looks at (at least 3)."""

    def __init__(self, detector: SafetyDetector, *, guilds: SafetySettingsSource, withheld: WithheldStore,
                 clock: Clock | None = None, samples: int = DEFAULT_SAMPLES) -> None:
        self.detector = detector
        self.guilds = guilds
        self.withheld = withheld
        self.clock: Clock = clock or SystemClock()
        self.samples = samples
        self._status = SafetyStatus(SafetyState.NOT_LOADED, detector.name)
        self._load_lock = asyncio.Lock()
        self._listeners: list[SafetyListener] = []
        self.ahead = ChecksAhead()  # result checks started at download, taken by the delivery's check

    # ------------------------------------------------------------------ the detector

    @property
    def status(self) -> SafetyStatus:
        return self._status

    async def load(self) -> SafetyStatus:
        """Load the detector once (in a worker thread). A failure is kept as the gate's state and
        logged once at ERROR; it never raises. Checks made before it call it themselves."""
        async with self._load_lock:
            if self._status.state is not SafetyState.NOT_LOADED:
                return self._status
            started = time.perf_counter()
            reason: str | None = None
            try:
                await self.detector.load()
            except SafetyUnavailable as exc:
                reason = exc.reason
            except Exception as exc:  # anything else the detector raises: still fail closed
                reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            took = time.perf_counter() - started
            if reason is None:
                self._status = SafetyStatus(SafetyState.READY, self.detector.name, load_seconds=took)
                log.info("Content safety detector %s loaded in %.2f s", self.detector.name, took)
            else:
                self._status = SafetyStatus(SafetyState.UNAVAILABLE, self.detector.name, reason=reason)
                log.error("Content safety detector unavailable: %s. Every job is refused in servers whose "
                          "safety mode is not off (python -m bot doctor says more)", reason)
            return self._status

    # ------------------------------------------------------------------ guilds

    async def settings_for(self, guild_id: int | None) -> GuildSafety:
        """A guild's mode and thresholds; direct messages get strict with the defaults."""
        if guild_id is None:
            return GuildSafety()
        return guild_safety(await self.guilds.get_settings(guild_id))

    def add_listener(self, listener: SafetyListener) -> None:
        """Be told about every refusal and withheld result (the audit log)."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    # ------------------------------------------------------------------ input

    async def require_available(self, *, guild_id: int | None, channel_id: int, user_id: int,
                                others_image: bool = False) -> None:
        """Refuse at once (before anything is counted or shown) when the detector is unavailable
        and the effective mode needs it."""
        status = await self.load()
        if status.ready:
            return
        guild = await self.settings_for(guild_id)
        forced = strict_forced(direct_message=guild_id is None, others_image=others_image)
        if not needs_check(guild.mode, forced_strict=forced):
            return
        mode = effective_mode(guild.mode, forced_strict=forced)
        await self._emit(SafetyEvent("refused", guild_id, channel_id, user_id, self.clock.now(), Rule.UNAVAILABLE,
                                     mode, None))
        raise SafetyRefused(Rule.UNAVAILABLE)

    async def check_input(self, subject: InputSubject) -> dict[str, Any]:
        """Judge a new job's input; raise :class:`SafetyRefused` or return what to keep with the job."""
        guild = await self.settings_for(subject.guild_id)
        stored = subject.stored or {}
        others = bool(subject.request.get(OTHERS_IMAGE_KEY)) or bool(stored.get(OTHERS_IMAGE_KEY))
        direct = subject.guild_id is None
        forced = strict_forced(direct_message=direct, others_image=others)
        mode = effective_mode(guild.mode, forced_strict=forced)
        record: dict[str, Any] = {OTHERS_IMAGE_KEY: others, "mode": mode.value}
        if isinstance(stored.get("input_scores"), list):
            record["input_scores"] = stored["input_scores"]
        if not needs_check(guild.mode, forced_strict=forced):
            return record
        verdict = stored_verdict(stored, guild.thresholds)
        unavailable = False
        if verdict is None:
            verdict, unavailable = await self._judge_image(subject.image, guild.thresholds)
        age_restricted = bool(subject.request.get(AGE_RESTRICTED_KEY)) and not direct
        decision = decide(guild.mode, verdict, stage=Stage.INPUT, age_restricted_channel=age_restricted,
                          forced_strict=forced)
        if verdict is not None:
            record["input_level"] = verdict.level.value
            record["input_scores"] = [[label, score] for label, score in verdict.scores]
        if decision is not Decision.REFUSE:
            return record
        rule = rule_for(guild.mode, direct_message=direct, others_image=others, verdict=verdict,
                        unavailable=unavailable)
        log.info("input of user %s refused in guild %s channel %s (%s mode, rule %s): %s", subject.user_id,
                 subject.guild_id, subject.channel_id, mode.value, rule.value,
                 verdict.summary() if verdict is not None else "not checked")
        thumbnail = None
        if self._listeners and subject.image is not None and not isinstance(subject.image, Path):
            thumbnail = await asyncio.to_thread(thumbnail_png, subject.image)
        await self._emit(SafetyEvent("refused", subject.guild_id, subject.channel_id, subject.user_id,
                                     self.clock.now(), rule, mode, verdict, thumbnail=thumbnail))
        raise SafetyRefused(rule, verdict)

    async def _judge_image(self, image: bytes | Path | RGBArray | None, thresholds: Thresholds) -> tuple[Verdict | None, bool]:
        """(verdict, detector unavailable): None when the image could not be checked."""
        if not (await self.load()).ready:
            return None, True
        if image is None:
            return None, False
        return await _detect("input", functools.partial(_check_input_file, self.detector, image, thresholds))

    # ------------------------------------------------------------------ result

    async def check_result(self, job: Job, path: Path, *, age_restricted: bool) -> ResultJudgement:
        """Judge a job's original output file; a withheld result is recorded for moderators.

        ``age_restricted``: the channel's NSFW flag, read at delivery (ignored in DMs)."""
        guild = await self.settings_for(job.guild_id)
        others, direct = _others_image(job), job.guild_id is None
        forced = strict_forced(direct_message=direct, others_image=others)
        mode = effective_mode(guild.mode, forced_strict=forced)
        if not needs_check(guild.mode, forced_strict=forced):
            return ResultJudgement(Decision.ALLOW, None, None, mode)
        verdict, unavailable = await self._judge_video(path, guild.thresholds)
        decision = decide(guild.mode, verdict, stage=Stage.RESULT, age_restricted_channel=age_restricted and not direct,
                          forced_strict=forced)
        rule = None
        if decision is Decision.WITHHOLD:
            rule = rule_for(guild.mode, direct_message=direct, others_image=others, verdict=verdict,
                            unavailable=unavailable)
            await self._withhold(job, path, verdict, rule, mode)
        elif verdict is not None:
            log.debug("job %s: result %s (%s)", job.id, decision.value, verdict.summary())
        return ResultJudgement(decision, verdict, rule, mode)

    def start_result_check(self, job: Job, path: Path) -> None:
        """Start decoding and detecting ``job``'s result ``path`` now (where its guild's mode needs a
        check), for the delivery's :meth:`check_result` to use; :meth:`drop_result_check` forgets it."""
        self.ahead.start(path, functools.partial(self._detect_ahead, job, path))

    def drop_result_check(self, path: Path) -> None:
        self.ahead.drop(path)

    async def _detect_ahead(self, job: Job, path: Path) -> SignedCheck | None:
        mode = (await self.settings_for(job.guild_id)).mode
        if not needs_check(mode, forced_strict=strict_forced(direct_message=job.guild_id is None,
                                                             others_image=_others_image(job))):
            return None
        if not (await self.load()).ready:
            return None
        return await _in_safety_thread(signed_check, self.detector, path, self.samples)

    async def _judge_video(self, path: Path, thresholds: Thresholds) -> tuple[Verdict | None, bool]:
        if not (await self.load()).ready:
            return None, True
        ahead = await self.ahead.verdict(path, thresholds)
        if ahead is not None:
            return ahead, False
        return await _detect("result", lambda: check_result(self.detector, path, thresholds, samples=self.samples).verdict)

    async def _withhold(self, job: Job, path: Path, verdict: Verdict | None, rule: Rule, mode: Mode) -> None:
        now = self.clock.now()
        record, created = await self.withheld.add(WithheldResult(
            job_id=job.id, guild_id=job.guild_id, channel_id=job.channel_id, user_id=job.user_id, at=now,
            level=verdict.level.value if verdict is not None else "unchecked",
            labels=verdict.labels if verdict is not None else (), rule=rule.value, mode=mode.value,
            result_path=str(path),
        ))
        log.info("job %s: result withheld (%s mode, rule %s): %s", job.id, mode.value, rule.value,
                 verdict.summary() if verdict is not None else "not checked")
        if created:
            await self._emit(SafetyEvent("withheld", job.guild_id, job.channel_id, job.user_id, record.at, rule, mode,
                                         verdict, job_id=job.id, result_path=path))

    # ------------------------------------------------------------------ events

    async def _emit(self, event: SafetyEvent) -> None:
        for listener in list(self._listeners):
            try:
                await listener(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log_failure(log, logging.WARNING, "a safety %s listener failed", event.kind)


def _others_image(job: Job) -> bool:
    stored = job.result_meta.get(SAFETY_KEY) or {}
    return bool(stored.get(OTHERS_IMAGE_KEY)) if isinstance(stored, Mapping) else False
