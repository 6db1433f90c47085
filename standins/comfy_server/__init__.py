"""A ComfyUI test server that behaves like the recorded real one (see tests/fixtures/comfyui).

``ComfyTestServer`` lives in ``standins.comfy_server.server``; pytest fixtures in
``standins.comfy_server.fixtures``; ``python -m standins.comfy_server`` runs it in its own process.
"""

from __future__ import annotations

from .server import ComfyTestServer

__all__ = ["ComfyTestServer"]
