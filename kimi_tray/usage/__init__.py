"""Kimi quota (weekly and rolling windows): model, client, words, fetch policy, notifications."""

from kimi_tray.usage.client import UsageClient, UsageUnauthorized
from kimi_tray.usage.model import Usage, UsageFormatError, UsageWindow, parse_usages
from kimi_tray.usage.policy import FetchPolicy
from kimi_tray.usage.store import UsageStore

__all__ = ["FetchPolicy", "Usage", "UsageClient", "UsageFormatError", "UsageStore", "UsageUnauthorized",
           "UsageWindow", "parse_usages"]
