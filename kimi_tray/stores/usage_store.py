"""usage.json in the state dir: the last numbers (shown, greyed, until a fetch succeeds) and which
quota notifications were already sent, so a restart never repeats one."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kimi_tray.core.errors import LocalFileError
from kimi_tray.core.private_dir import ensure_private_dir
from kimi_tray.core.usage import Usage
from kimi_tray.stores.fileio import atomic_write, read_json_object

log = logging.getLogger(__name__)


class UsageStore:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "usage.json"

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data, _ = read_json_object(self.path)
        except LocalFileError as exc:
            log.warning("Ignoring the usage file: %s", exc)
            return {}
        return data

    def _update(self, key: str, value: Any) -> None:
        data = self._load()
        data[key] = value
        try:
            ensure_private_dir(self.path.parent)
            atomic_write(self.path, (json.dumps(data, indent=2) + "\n").encode())
        except LocalFileError as exc:
            log.warning("Could not save the usage file: %s", exc)

    def load_usage(self, stale_after: float) -> Usage | None:
        return Usage.from_cache(self._load().get("last"), stale_after)

    def save_usage(self, usage: Usage) -> None:
        self._update("last", usage.to_cache())

    def load_alerts(self) -> dict[str, dict[str, Any]]:
        alerts = self._load().get("alerts")
        return alerts if isinstance(alerts, dict) else {}

    def save_alerts(self, alerts: dict[str, dict[str, Any]]) -> None:
        self._update("alerts", alerts)
