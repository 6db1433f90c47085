"""Everything that speaks Discord, below the cogs: the command tree and its one error translator,
permission checks, status rendering, the animate flow (from an interaction to a job, and the job
buttons' handler), job buttons, the status edit scheduler, result delivery and the audit log.
The only package under ``bot/`` allowed to import discord (besides ``bot/app.py``).
"""
