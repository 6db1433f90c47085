"""Benchmarks (not tests): the bot's own cost per job, under load, and against the example-script pattern.

Run everything with ``python -m bench`` (or ``python bench/run.py``); ``--quick`` for a smaller
run. See :mod:`bench.run`.
"""
