"""The job service and what it is made of: from a member's request to a delivered result.

- :mod:`bot.jobs.service`: :class:`~bot.jobs.service.JobService`, which stores, queues, runs,
  follows, cancels, times out and recovers jobs, and hands results to its delivery;
- :mod:`bot.jobs.models`: ``Job`` and its ``JobState`` machine;
- :mod:`bot.jobs.fairqueue`: the bot's own round-robin waiting line;
- :mod:`bot.jobs.backends`: the ComfyUI servers, their health, and which one takes the next job;
- :mod:`bot.jobs.routing`: which workflow a job runs and which servers may take it;
- :mod:`bot.jobs.pipeline`: the steps of one generation on one server (shared with the shell);
- :mod:`bot.jobs.progress`: progress streams and ETA; :mod:`bot.jobs.estimate`: wait estimates.

Nothing here imports discord; importing this package does nothing.
"""
