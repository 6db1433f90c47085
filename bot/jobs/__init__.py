"""The job layer: job models and states, the fair waiting queue, progress streams.

Submodules: :mod:`bot.jobs.models` (``Job``, ``JobState``), :mod:`bot.jobs.fairqueue`
(``FairQueue``), :mod:`bot.jobs.progress` (``ProgressStream``, ``EtaEstimator``) and,
later, ``bot.jobs.service``. Nothing here imports discord; importing this package does
nothing.
"""
