"""The tray face: the only pystray importer, icons, menu model, notifiers, the UI-thread hand-off."""
