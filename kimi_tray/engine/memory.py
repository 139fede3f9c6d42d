"""What the engine remembers across restarts (our state file), shared by its parts on its thread."""

from __future__ import annotations

import logging
from pathlib import Path

from kimi_tray.engine.owned import Owned, note_mutation
from kimi_tray.stores.state import PersistentState, StateStore

log = logging.getLogger(__name__)


class Memory(Owned):
    def __init__(self, state_dir: Path) -> None:
        self.store = StateStore(state_dir)
        self.state: PersistentState = self.store.load()

    @property
    def path(self) -> Path:
        return self.store.path

    def save(self) -> None:
        note_mutation(self, "state file")
        self.store.save(self.state)

    def reload_if_changed_outside(self) -> None:
        """The state file changed on disk: take what another process wrote (a deleted file is
        ours to write again, so it is not reloaded)."""
        if not self.store.path.exists():
            return
        loaded = self.store.load()
        if loaded != self.state:
            log.info("The state file changed outside this process; reloading it.")
            self.state = loaded
