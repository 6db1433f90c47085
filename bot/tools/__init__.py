"""Operator tools run from the shell: ``python -m bot doctor`` and ``python -m bot animate`` (with its progress bar)."""
