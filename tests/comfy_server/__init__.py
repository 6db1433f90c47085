"""A ComfyUI test server that behaves like the recorded real one (see tests/fixtures/comfyui)."""
