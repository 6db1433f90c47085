"""Tests of /animate, the job buttons, /queue, /cancel and /history through the Discord stand-in."""
