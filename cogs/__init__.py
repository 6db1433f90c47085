"""discord.py extensions: thin adapters from Discord interactions to the bot's services.

Each extension's ``setup(bot)`` builds its cog from the typed :class:`bot.app.AnimateBot`, passing
the services it uses explicitly (``Queue(jobs=bot.jobs, policy=bot.policy)``), so a test can
build a cog without a whole bot.
"""
