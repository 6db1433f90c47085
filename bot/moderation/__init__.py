"""Moderation core: who may generate, how much and where, and the audit trail. No Discord here.

- :mod:`bot.moderation.models`: :class:`GuildSettings`, :class:`Ban`, :class:`UsageDecision` and UTC days.
- :mod:`bot.moderation.messages`: every member-facing limit/refusal text.
- :mod:`bot.moderation.policy`: :class:`Requester`, moderator checks and :class:`AdmissionPolicy`.
- :mod:`bot.moderation.actions`: validated settings changes, each written to the audit log.
- :mod:`bot.moderation.caps`: a guild's option defaults and cost caps, and the pure rules applying them.
- :mod:`bot.moderation.option_actions`: ``/mod defaults`` and ``/mod caps``, validated and audited.
- :mod:`bot.moderation.audit_text`: one-line renderings of audit records for the audit channel.
"""
