"""An async client library for ComfyUI's HTTP and websocket API.

It never imports discord: the bot's services use it, and so do the operator tools.
"""
