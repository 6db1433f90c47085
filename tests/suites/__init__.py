"""Suites that run the whole bot under failures: secrets never leak, mixed faults under load."""
