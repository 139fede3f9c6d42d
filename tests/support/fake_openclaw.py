"""A recording stand-in for the `openclaw` CLI: counts calls and restarts, keeps a tiny store.

It mimics the parts of OpenClaw 2026.9.x that kimi-tray uses (paste-token, models status --json,
gateway restart). It records a fingerprint of what came on stdin, never the token itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    state = Path(os.environ.get("OPENCLAW_STATE_DIR") or Path.home() / ".openclaw")
    store_path = state / "fake-store.json"
    store = json.loads(store_path.read_text()) if store_path.exists() else {}
    record = {"argv": argv, "time": time.time()}
    stdin = ""
    if argv[:3] == ["models", "auth", "paste-token"]:
        stdin = sys.stdin.read()
        record["stdin_fp"] = hashlib.sha256(stdin.encode()).hexdigest()[:16]
    environ_log = os.environ.get("FAKE_OPENCLAW_ENVIRON_LOG")
    if environ_log:  # what /proc/<pid>/environ of this call shows, for the no-leak checks
        with open(f"/proc/{os.getpid()}/environ", "rb") as source, open(environ_log, "ab") as sink:
            sink.write(source.read().replace(b"\0", b"\n") + b"\n")
    log = os.environ.get("FAKE_OPENCLAW_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(json.dumps(record) + "\n")
    failing = os.environ.get("FAKE_OPENCLAW_FAIL", "")
    if argv[:3] == ["models", "auth", "paste-token"]:
        if "paste-token" in failing:
            print("Error: gateway exploded", file=sys.stderr)
            return 1
        profile = argv[argv.index("--profile-id") + 1]
        seconds = int(argv[argv.index("--expires-in") + 1].rstrip("s"))
        store[profile] = {"label": f"{stdin[:8]}...{stdin[-7:]}",
                          "expiresAt": int((time.time() + seconds) * 1000)}
        state.mkdir(parents=True, exist_ok=True)
        store_path.write_text(json.dumps(store))
        print(f"Auth profile: {profile} (kimi/token)")
        return 0
    if argv[:3] == ["models", "status", "--json"]:
        profiles = [{"profileId": pid, "provider": "kimi", "type": "token", "status": "ok",
                     "expiresAt": p["expiresAt"]} for pid, p in store.items()]
        labels = [f"{pid}=token:{p['label']}" for pid, p in store.items()]
        print(json.dumps({"auth": {"providers": [{"provider": "kimi", "profiles": {"labels": labels}}],
                                   "oauth": {"profiles": profiles}}}))
        return 0
    if argv[:2] == ["gateway", "restart"]:
        if "restart" in failing:
            print("service management skipped: non-default state dir", file=sys.stderr)
            return 1
        print("Restarted gateway")
        return 0
    print(f"fake openclaw: unsupported {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
