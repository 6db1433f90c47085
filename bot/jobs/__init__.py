"""The job service and what it is made of: from a member's request to a delivered result.

- :mod:`bot.jobs.service`: :class:`~bot.jobs.service.JobService`, the facade the Discord layer,
  cogs, tools and tests use; it builds the parts below over one shared context;
- :mod:`bot.jobs.context`: what the parts share (store, pool, hubs, queue, streams, limits,
  delivery, listeners) and the one registry of the service's tasks;
- :mod:`bot.jobs.intake`: submit, re-roll, cancel, clear, the limits and the slot reserved for an
  admitted request while its image is prepared;
- :mod:`bot.jobs.dispatcher`: the fair line, choosing a server, places in line, waiting time-outs;
- :mod:`bot.jobs.attempt` and :mod:`bot.jobs.runner`: one attempt at running a job on a server,
  from upload to delivery, and the one reason it ends; :mod:`bot.jobs.endings`: every reason a
  job ends (``EndReason``) and the one writer of an end;
- :mod:`bot.jobs.fleet`: server health, evacuating a dead server, abandoned prompts, which
  workflows each server runs; :mod:`bot.jobs.recovery`: unfinished jobs on start;
  :mod:`bot.jobs.housekeeping`: the periodic sweep and retention;
- :mod:`bot.jobs.models`: ``Job`` and its ``JobState`` machine; :mod:`bot.jobs.meta`: the run
  facts kept in a job's ``result_meta`` (moved once, delivery attempts), read and written there only;
- :mod:`bot.jobs.fairqueue`: the bot's own round-robin waiting line (and reservations);
- :mod:`bot.jobs.backends`: the ComfyUI servers, their health, and which one takes the next job;
- :mod:`bot.jobs.routing`: which workflow a job runs and which servers may take it;
- :mod:`bot.jobs.pipeline`: the steps of one generation on one server (shared with the shell);
- :mod:`bot.jobs.progress`: progress streams, ETA and the one ComfyUI-event-to-update function;
  :mod:`bot.jobs.estimate`: wait estimates.

Nothing here imports discord; importing this package does nothing.
"""
