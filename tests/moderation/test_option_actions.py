"""/mod defaults and /mod caps as actions: moderators only, validated, audited, kept across restarts."""

from __future__ import annotations

from pathlib import Path

from bot.errors import InvalidInput, NotAllowed
from bot.moderation.actions import Actions
from bot.moderation.audit_text import render
from bot.moderation.caps import OptionCaps
from bot.moderation.option_actions import set_option_caps, set_option_defaults
from bot.moderation.policy import AdmissionPolicy
from bot.storage import AuditRecord, Storage
from standins.fake_clock import FakeClock
from tests.moderation.test_caps import BOTH
from tests.storage.helpers import list_audit

from .conftest import GUILD, MOD_ROLE, admin, member, refused


async def test_members_are_refused_and_nothing_changes(store: Storage, policy: AdmissionPolicy) -> None:
    plain = member(5, manage_messages=True)
    with refused(NotAllowed, "Only moderators"):
        await set_option_defaults(store, plain, BOTH, values={"frames": 10})
    with refused(NotAllowed, "Only moderators"):
        await set_option_caps(store, plain, BOTH, max_frames=10)
    with refused(NotAllowed, "only works in a server"):
        await set_option_caps(store, member(5, guild_id=None), BOTH, max_frames=10)
    assert (await policy.option_rules(GUILD)).is_default
    assert await list_audit(store, GUILD) == []


async def test_a_moderator_role_sets_clears_and_every_change_is_audited(store: Storage, policy: AdmissionPolicy) -> None:
    await store.guilds.update_settings(GUILD, moderator_role_ids=(MOD_ROLE,))
    mod = member(800, roles=(MOD_ROLE,))
    result = await set_option_caps(store, mod, BOTH, max_frames=14, allowed_formats="mp4, webp", max_extensions=2)
    assert result.value.caps == OptionCaps(max_frames=14, allowed_formats=("mp4", "webp"), max_extensions=2)
    assert render(result.audit).endswith(
        f"<@{mod.user_id}> changed max frames none → 14; formats all → mp4, webp; max extensions 3 → 2")
    result = await set_option_defaults(store, mod, BOTH, values={"format": "webp", "frames": 12, "motion": None})
    assert dict(result.value.defaults) == {"frames": 12, "format": "webp"}
    assert render(result.audit).endswith("changed option defaults the workflows' own → frames 12, format webp")

    with refused(InvalidInput, "format gif is not available on the fallback workflow svd_img2vid_core"):
        await set_option_defaults(store, mod, BOTH, values={"format": "gif"})
    with refused(InvalidInput, "the server's default frames 12 is above the cap of 10"):
        await set_option_caps(store, mod, BOTH, max_frames=10)
    with refused(InvalidInput, "Give at least one cap"):
        await set_option_caps(store, mod, BOTH)

    cleared = await set_option_defaults(store, mod, BOTH, clear=["frames"])
    assert dict(cleared.value.defaults) == {"format": "webp"}
    caps = await set_option_caps(store, mod, BOTH, max_frames=None, max_extensions=None)
    assert caps.value.caps == OptionCaps(allowed_formats=("mp4", "webp"))
    assert (await policy.caps_for(GUILD)) == caps.value.caps and (await policy.caps_for(None)) == OptionCaps()
    actions = [r.action for r in await list_audit(store, GUILD)]
    assert actions.count(Actions.OPTION_CAPS) == 2 and actions.count(Actions.OPTION_DEFAULTS) == 2


async def test_rules_survive_a_restart_and_stay_per_guild(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "data" / "jobs.sqlite3"
    async with await Storage.open(path, clock=clock) as store:
        await set_option_caps(store, admin(), BOTH, max_steps=12, allowed_formats=["webp"])
        await set_option_defaults(store, admin(), BOTH, values={"steps": 10, "cfg": 3.5})
    async with await Storage.open(path, clock=clock) as store:
        rules = await store.guilds.get_option_rules(GUILD)
        assert rules.caps == OptionCaps(max_steps=12, allowed_formats=("webp",))
        assert dict(rules.defaults) == {"steps": 10, "cfg": 3.5}
        assert (await store.guilds.get_option_rules(GUILD + 1)).is_default


def test_an_audit_record_of_caps_never_shows_more_than_names_and_numbers() -> None:
    record = AuditRecord(guild_id=GUILD, at=0, actor_id=1, action=Actions.OPTION_CAPS, details={
        "allowed_formats": {"before": None, "after": ["mp4", "https://evil.example/x"]},
        "max_steps": {"before": 20, "after": None}})
    line = render(record)
    assert "formats all → mp4, [link removed]" in line and "max steps 20 → none" in line and "evil" not in line
