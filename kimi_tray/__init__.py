"""kimi-tray: keeps a Kimi Code OAuth login alive for the Kimi CLI and OpenClaw."""

__version__ = "0.1.0"
