"""A recording stand-in for the `openclaw` CLI: counts calls and restarts, keeps a tiny store.

It mimics the parts of OpenClaw 2026.9.x that kimi-tray uses (--version, plugins list --json,
paste-token, models status --json, gateway restart). FAKE_OPENCLAW_NO_KIMI_PLUGIN=1 plays an
OpenClaw without its Kimi provider plugin; FAKE_OPENCLAW_PASTE_DELAY makes paste-token slow.
It records a fingerprint of what came on stdin, never the token itself.
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
    if argv == ["--version"] and "version" in failing:
        print("node: --experimental-sqlite is not allowed", file=sys.stderr)
        return 9
    if argv == ["--version"]:
        print(os.environ.get("FAKE_OPENCLAW_VERSION", "OpenClaw 2026.9.6 (fake)"))
        return 0
    if argv[:3] == ["plugins", "list", "--json"]:
        kimi = not os.environ.get("FAKE_OPENCLAW_NO_KIMI_PLUGIN")
        plugins = [{"id": "openai", "enabled": True, "providerIds": ["openai"]}]
        if kimi:
            plugins.append({"id": "kimi", "enabled": True, "providerIds": ["kimi", "kimi-coding"]})
        print(json.dumps({"plugins": plugins}))
        return 0
    if argv[:3] == ["models", "auth", "paste-token"]:
        if "paste-token" in failing:
            print("Error: gateway exploded", file=sys.stderr)
            return 1
        time.sleep(float(os.environ.get("FAKE_OPENCLAW_PASTE_DELAY", "0")))
        profile = argv[argv.index("--profile-id") + 1]
        seconds = int(argv[argv.index("--expires-in") + 1].rstrip("s"))
        store[profile] = {"label": f"{stdin[:8]}...{stdin[-7:]}",
                          "provider": argv[argv.index("--provider") + 1], "type": "token",
                          "expiresAt": int((time.time() + seconds) * 1000)}
        state.mkdir(parents=True, exist_ok=True)
        store_path.write_text(json.dumps(store))
        print(f"Auth profile: {profile} (kimi/token)")
        return 0
    if argv[:3] == ["models", "status", "--json"] and "migration" in failing:
        # What OpenClaw 2026.9.6 prints over a 2026.6.x state dir it has not migrated yet.
        message = ("Auth profile store ~/.openclaw/agents/main/agent/openclaw-agent.sqlite requires "
                   "legacy credential migration; affected providers: kimi-coding; run openclaw "
                   "doctor --fix.")
        print(json.dumps({"ok": False, "error": {"type": "cli_error", "message": message}}, indent=2))
        print(f"[openclaw] Reason: {message}\n[openclaw] Help: openclaw --help", file=sys.stderr)
        return 1
    if argv[:3] == ["models", "status", "--json"]:
        # A profile seeded into fake-store.json may be another type (a user's api_key).
        profiles = [{"profileId": pid, "provider": p.get("provider", "kimi"),
                     "type": p.get("type", "token"), "status": "ok", "expiresAt": p.get("expiresAt")}
                    for pid, p in store.items()]
        labels = [f"{pid}={p['label']}" if p.get("type") == "api_key" else f"{pid}=token:{p['label']}"
                  for pid, p in store.items()]
        reported = os.environ.get("FAKE_OPENCLAW_STORE_PATH") or str(state / "state" / "openclaw.sqlite")
        print(json.dumps({"auth": {"storePath": reported,
                                   "providers": [{"provider": "kimi", "profiles": {"labels": labels}}],
                                   "oauth": {"profiles": profiles}}}))
        return 0
    if argv[:3] == ["models", "auth", "logout"]:
        if store.pop(argv[3], None) is None:
            print(f"Error: no auth profile {argv[3]}", file=sys.stderr)
            return 1
        store_path.write_text(json.dumps(store))
        print(f"Removed auth profile {argv[3]}")
        return 0
    if argv[:3] == ["models", "list", "--all"]:
        kimi = not os.environ.get("FAKE_OPENCLAW_NO_KIMI_PLUGIN")
        models = [{"key": "kimi/kimi-for-coding"}] if kimi else []
        print(json.dumps({"count": len(models), "models": models}))
        return 0
    if argv[:3] == ["gateway", "status", "--json"]:
        print(json.dumps({"rpc": {"ok": os.environ.get("FAKE_OPENCLAW_GATEWAY_RUNNING") == "1"}}))
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
