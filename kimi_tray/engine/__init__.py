"""The engine: the only owner of renewal state. Scheduling, refresh under the Kimi lock, OpenClaw hand-
off, login, usage fetching. Imports no UI.
"""
