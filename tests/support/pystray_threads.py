"""Run kimi-tray with every pystray icon call recorded with the thread that made it.

Usage: python -m tests.support.pystray_threads LOGFILE [kimi-tray args...]
Each line of LOGFILE: call, thread name, whether it is the main thread, detail (titles only).
"""

from __future__ import annotations

import runpy
import sys
import threading
from typing import Any

PROPERTIES = ("icon", "title", "menu", "visible")
METHODS = ("update_menu", "notify", "remove_notification", "stop")


def install(path: str) -> None:
    import pystray._base as base

    out = open(path, "a", buffering=1)  # noqa: SIM115  # lives as long as the process
    lock = threading.Lock()

    def record(call: str, detail: str = "") -> None:
        thread = threading.current_thread()
        with lock:
            out.write(f"{call}\t{thread.name}\t{thread is threading.main_thread()}\t{detail}\n")

    def wrap_property(name: str) -> None:
        original: property = getattr(base.Icon, name)

        def setter(self: Any, value: Any) -> None:
            record(f"{name}=", str(value) if name == "title" else "")
            assert original.fset is not None
            original.fset(self, value)

        setattr(base.Icon, name, property(original.fget, setter))

    def wrap_method(name: str) -> None:
        original = getattr(base.Icon, name)

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            record(name)
            return original(self, *args, **kwargs)

        setattr(base.Icon, name, method)

    for name in PROPERTIES:
        wrap_property(name)
    for name in METHODS:
        wrap_method(name)


if __name__ == "__main__":
    install(sys.argv[1])
    sys.argv = ["kimi-tray", *sys.argv[2:]]
    runpy.run_module("kimi_tray", run_name="__main__", alter_sys=True)
