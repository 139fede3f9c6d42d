"""The reliability suite at larger counts: kill -9 runs, lock races and two-process rounds times
SCALE (default 10: 3000 kills, 1000 races per lock kind, 200 two-process rounds).

usage: .venv/bin/python benchmarks/reliability.py [SCALE]
Prints the figures as a table (also in .artifacts/reliability.json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    scale = sys.argv[1] if len(sys.argv) > 1 else "10"
    env = {**os.environ, "KIMI_TRAY_RELIABILITY_SCALE": scale}
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/reliability"], cwd=ROOT, env=env)
    figures = json.loads((ROOT / ".artifacts" / "reliability.json").read_text())
    print(f"\n| figure (scale {figures.pop('scale')}) | count |\n|---|---|")
    for key, value in figures.items():
        print(f"| {key} | {value} |")
    return code


if __name__ == "__main__":
    sys.exit(main())
