"""A second real process that behaves like a Kimi CLI: takes the Kimi lock, optionally refreshes
the token itself (rotating it), writes the file, holds the lock a while, releases.

usage: kimi_cli_standin.py CRED_FILE {flock|mkdir} HOLD_SECONDS [OAUTH_URL]
Prints "locked" once it holds the lock.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

CLIENT_ID = "17e5f671-d194-4dfb-9706-5516cb48c098"


def main() -> int:
    cred = Path(sys.argv[1])
    kind, hold = sys.argv[2], float(sys.argv[3])
    url = sys.argv[4] if len(sys.argv) > 4 else ""
    if kind == "flock":
        import fcntl

        fd = os.open(cred.with_name("kimi-code.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
    else:
        lock_dir = cred.parent.parent / "oauth" / "kimi-code.lock"
        lock_dir.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.time() + 30  # proper-lockfile retries for about a minute
        while True:
            try:
                os.mkdir(lock_dir)
                break
            except FileExistsError:
                if time.time() > deadline:
                    raise
                time.sleep(0.02)
    print("locked", flush=True)
    if url:
        data = json.loads(cred.read_text())
        body = urllib.parse.urlencode({"client_id": CLIENT_ID, "grant_type": "refresh_token",
                                       "refresh_token": data["refresh_token"]}).encode()
        with urllib.request.urlopen(url + "/api/oauth/token", body) as response:
            token = json.loads(response.read())
        data.update(access_token=token["access_token"], refresh_token=token["refresh_token"],
                    expires_at=time.time() + token["expires_in"], expires_in=token["expires_in"])
        tmp = cred.with_name(cred.name + ".standin")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, cred)
    deadline = time.time() + hold
    while time.time() < deadline:
        if kind == "mkdir":
            os.utime(lock_dir)
        time.sleep(max(0.0, min(0.2, deadline - time.time())))
    if kind == "mkdir":
        os.rmdir(lock_dir)
    print("released", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
