"""Pytest fixtures that start ComfyUI test servers on 127.0.0.1."""
