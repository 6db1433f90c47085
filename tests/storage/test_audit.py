"""The audit log: records appended with their details, read back newest first."""

from __future__ import annotations

from bot.storage import AuditRecord, Storage
from standins.fake_clock import FakeClock
from tests.storage.helpers import list_audit


async def test_audit_log(store: Storage, clock: FakeClock) -> None:
    await store.audit.add(AuditRecord(guild_id=1, at=clock.now(), actor_id=5, action="job.created", job_id="j1", details={"seed": 3}))
    clock.advance(1)
    rid = await store.audit.add(AuditRecord(guild_id=1, at=clock.now(), actor_id=6, action="member.banned", details={"user": 9}))
    await store.audit.add(AuditRecord(guild_id=2, at=clock.now(), actor_id=6, action="job.created", job_id="j2"))
    await store.audit.add(AuditRecord(guild_id=None, at=clock.now(), actor_id=6, action="job.created", job_id="j3"))
    records = await list_audit(store, 1)
    assert [r.action for r in records] == ["member.banned", "job.created"]
    assert records[0].id == rid and records[0].details == {"user": 9}
    assert [r.job_id for r in await list_audit(store, 1, job_id="j1")] == ["j1"]
    assert len(await list_audit(store, 1, action="job.created")) == 1
    assert [r.job_id for r in await list_audit(store, None)] == ["j3"]  # direct messages
