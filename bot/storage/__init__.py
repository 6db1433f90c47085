"""The bot's records on SQLite: one file under ``DATA_DIR`` (``Settings.store_path``), no discord.

- :mod:`bot.storage.storage`: :class:`Storage`, the database and its parts, opened together.
- :mod:`bot.storage.database`: the connection, the schema version and its migrations.
- :mod:`bot.storage.jobs`: the ``jobs`` table, state changes checked against the job state machine.
- :mod:`bot.storage.guilds`: guild settings, bans and daily usage counters.
- :mod:`bot.storage.audit`: the audit log.
- :mod:`bot.storage.withheld`: results the content-safety check withheld, for moderators.

The moderation types these keep (``GuildSettings``, ``Ban``, ``UsageDecision``) are in
:mod:`bot.moderation.models`; jobs are :class:`bot.jobs.models.Job`.
"""

from bot.storage.audit import AuditRecord, AuditStore
from bot.storage.database import MIGRATIONS, SCHEMA_VERSION, Database, Migration, StoreError
from bot.storage.guilds import GuildStore
from bot.storage.jobs import JobNotFound, JobStore, remove_files
from bot.storage.storage import Storage
from bot.storage.withheld import WithheldResult, WithheldStore

__all__ = [
    "AuditRecord",
    "AuditStore",
    "Database",
    "GuildStore",
    "JobNotFound",
    "JobStore",
    "MIGRATIONS",
    "Migration",
    "SCHEMA_VERSION",
    "Storage",
    "StoreError",
    "WithheldResult",
    "WithheldStore",
    "remove_files",
]
