"""Tests of the operator tools: ``python -m bot doctor`` and ``python -m bot animate``."""
