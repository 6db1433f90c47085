"""discord.py extensions: thin adapters from Discord interactions to the bot's services."""
