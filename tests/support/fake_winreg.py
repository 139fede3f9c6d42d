"""winreg at the edge: an in-memory HKCU with winreg's calling conventions (the Run key backend
is tested on Linux through this)."""

from __future__ import annotations


class FakeWinreg:
    HKEY_CURRENT_USER, KEY_READ, KEY_SET_VALUE, REG_SZ = "HKCU", 1, 2, 1

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], object] = {}
        self.denied = False  # True: reading the key fails as it does without access rights

    class _Key:
        def __init__(self, path: str) -> None:
            self.path = path

        def __enter__(self) -> FakeWinreg._Key:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    def CreateKeyEx(self, root: object, path: str, reserved: int, access: int) -> _Key:  # noqa: N802
        assert root == "HKCU" and reserved == 0
        return self._Key(path)

    def SetValueEx(self, key: _Key, name: str, reserved: int, kind: int, value: str) -> None:  # noqa: N802
        self.values[(key.path, name)] = value

    def QueryValueEx(self, key: _Key, name: str) -> tuple[object, int]:  # noqa: N802
        if self.denied:
            raise PermissionError(13, "Access is denied")
        if (key.path, name) not in self.values:
            raise FileNotFoundError(name)
        return self.values[(key.path, name)], self.REG_SZ

    def DeleteValue(self, key: _Key, name: str) -> None:  # noqa: N802
        if (key.path, name) not in self.values:
            raise FileNotFoundError(name)
        del self.values[(key.path, name)]
