"""Loaded by a child process while mutmut records coverage (see tests/support/mutation.py):
writes the mutated functions this process called to the file the parent test reads."""

import os

_hits = os.environ.get("KIMI_TRAY_MUTATION_HITS")
if os.environ.get("MUTANT_UNDER_TEST") == "stats" and _hits:
    import atexit

    from mutmut.configuration import config
    from mutmut.state import state
    from mutmut.utils.file_utils import change_cwd

    with change_cwd(os.environ.get("KIMI_TRAY_MUTATION_ROOT") or os.getcwd()):
        config()  # it reads pyproject.toml from the working directory: load it from the tree's

    def _dump() -> None:
        names = sorted(state()._stats)
        if names:
            with open(_hits, "a", encoding="utf-8") as sink:
                sink.write("".join(name + "\n" for name in names))

    atexit.register(_dump)
