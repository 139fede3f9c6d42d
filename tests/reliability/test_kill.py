"""kill -9 at random instants over a whole `kimi-tray renew`, counting lost logins.

Three kinds of instants, chosen at random per run:
  anywhere    uniformly over the whole process (start-up, lock, request, save, OpenClaw hand-off);
  in flight   after the server rotated the token and before it sent the answer (a server-side
              delay makes this window wide): this is the network's own window, where a loss
              cannot be avoided by any client;
  after answer  within 15 ms after the server sent the answer: the answer is on its way to, or
              in, our process, which must get it renamed into place.
How the killed process's connection ends tells whether it had read the answer (a reset: it died
with the answer unread). A login lost with the answer unread is in the network's window; one lost
after it was read and within 15 ms after the answer (not counting time the process waited for a
CPU) is in the hand-over (decode, write, rename: well under a millisecond idle) and counted apart, as
is one killed while the kernel held the save's own write or rename (a busy disk's journal); any
other loss fails the test.
After every kill: both files parse as strict JSON, the foreign field is kept, a login lost is
counted with the window it fell in, and leftover temp files (aged past a minute) are gone after
the next start. Losses outside the network's window must be 0.
"""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import ROOT, kimi_file, wait_for, write_credentials
from tests.reliability.conftest import FIGURES, Witness, run, scaled
from tests.support.oauth_server import FakeKimiOAuth

RUNS = 300
WORKERS = 2
SERVER_DELAY = 0.08  # between rotating and answering
AFTER_ANSWER = 0.015
# Reading the answer, decoding it and renaming the prepared file take well under a millisecond on
# an idle machine; page faults on a busy one stretch it to several. A kill in that hand-over loses
# the token like one on the wire does. It is measured as the time since the answer minus the time
# the process spent waiting for a CPU (/proc/<pid>/schedstat), so a busy CPU does not stretch it,
# while waiting for a disk (an fsync before the rename, say) still counts.
SAVE_OWN_TIME = 0.015


# x86_64 system calls of the save itself: write (the reserved bytes), rename, renameat, renameat2
SAVE_SYSCALLS = {"1", "82", "264", "316"} if platform.machine() == "x86_64" else set()


def current_syscall(pid: int) -> str:
    """What the process is doing in the kernel: a system call number, or "running"."""
    try:
        with open(f"/proc/{pid}/syscall") as handle:
            return handle.read().split()[0]
    except (OSError, IndexError):
        return "?"


def queue_wait(pid: int) -> float | None:
    """How long the process has waited for a CPU while runnable, in seconds."""
    try:
        with open(f"/proc/{pid}/schedstat") as handle:
            return int(handle.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


FOREIGN = {"kept_by_everyone": [1, "two"]}


def strict(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(name)

    return json.loads(path.read_text(), parse_constant=refuse)


class Worker:
    """One HOME and one server, so the server's callbacks belong to this worker's process."""

    def __init__(self, base: Path, env: dict[str, str], witness: Witness) -> None:
        self.home = base / "home"
        self.home.mkdir(parents=True)
        self.server = witness.server(FakeKimiOAuth().start())
        self.env = {**env, "HOME": str(self.home), "KIMI_CODE_OAUTH_HOST": self.server.url,
                    "XDG_STATE_HOME": str(self.home / ".local" / "state"),
                    "XDG_CONFIG_HOME": str(self.home / ".config"),
                    "FAKE_OPENCLAW_LOG": str(base / "openclaw-calls.jsonl")}
        witness.watch(self.home, self.env)
        self.cred = kimi_file(self.home)
        self.rng = random.Random(os.getpid() ^ id(self))
        self.tally: dict[str, int] = {}
        self.problems: list[str] = []
        self.login()

    def count(self, key: str) -> None:
        self.tally[key] = self.tally.get(key, 0) + 1

    def login(self) -> None:
        write_credentials(self.cred, self.server.issue(), time.time() + 60, foreign=FOREIGN)

    def one_run(self) -> None:
        mode = self.rng.choice(["anywhere", "in flight", "after answer"])
        self.server.fail_next(f"late:{SERVER_DELAY}")
        proc = subprocess.Popen([sys.executable, "-m", "kimi_tray", "renew"], env=self.env,
                                cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed_at: list[float] = []
        marks: dict[str, tuple[float, float | None]] = {}
        syscall: list[str] = []

        def kill() -> None:
            if proc.poll() is None:
                syscall.append(current_syscall(proc.pid))
                marks["kill"] = (time.time(), queue_wait(proc.pid))
                killed_at.append(time.time())
                os.kill(proc.pid, signal.SIGKILL)

        def answered() -> None:
            marks["answer"] = (time.time(), queue_wait(proc.pid))
            if mode == "after answer":
                arm(self.rng.uniform(0, AFTER_ANSWER))

        timers: list[threading.Timer] = []

        def arm(delay: float) -> None:
            timer = threading.Timer(delay, kill)
            timers.append(timer)
            timer.start()

        if mode == "anywhere":
            arm(self.rng.uniform(0, 0.5))
        elif mode == "in flight":
            self.server.on_rotate = lambda: arm(self.rng.uniform(0, SERVER_DELAY))
        self.server.on_answer = answered
        try:
            proc.wait(30)
        finally:
            for timer in timers:
                timer.join()
            self.server.on_rotate = self.server.on_answer = None
            self.server.clear_faults()
        self.count(f"kill -9 runs: {mode}")
        if killed_at:
            self.count("kill -9 runs: process killed")
        own = None  # time since the answer, minus time spent waiting for a CPU
        if "answer" in marks and "kill" in marks:
            (t0, w0), (t1, w1) = marks["answer"], marks["kill"]
            if w0 is not None and w1 is not None:
                own = (t1 - t0) - (w1 - w0)
        self.inspect(mode, killed_at[0] if killed_at else None, own, syscall[0] if syscall else "?")

    def inspect(self, mode: str, killed_at: float | None, own: float | None = None,
                syscall: str = "?") -> None:
        try:
            data = strict(self.cred)
        except ValueError as exc:
            self.problems.append(f"credential file unreadable after a kill: {exc}")
            self.count("corrupt or empty files")
            self.login()
            return
        if data.get("foreign") != FOREIGN:
            self.problems.append("foreign field lost")
        state = self.cred.parent.parent.parent / ".local/state/kimi-tray/state.json"
        if state.exists():
            try:
                strict(state)
            except ValueError:
                self.problems.append("state file unreadable after a kill")
                self.count("corrupt or empty files")
        token = data["refresh_token"]
        if token in self.server.valid_refresh:
            return
        rotation = next((r for r in self.server.rotations if r["consumed"] == token), None)
        if rotation is None or killed_at is None:
            self.problems.append(f"login lost without a kill after a rotation ({mode})")
            self.count("lost logins: outside the network's window")
        else:
            wait_for(lambda: rotation["answered"] is not None, timeout=5)
            if killed_at >= rotation["answered"]:
                wait_for(lambda: rotation["client_read"] is not None, timeout=5)
            if killed_at < rotation["answered"] or rotation["client_read"] is False:
                self.count("lost logins: in the network's window (answer not yet read by kimi-tray)")
            elif own is not None and own <= SAVE_OWN_TIME:
                self.count("lost logins: answer read, killed within 15 ms of it (the save)")
            elif syscall in SAVE_SYSCALLS:
                self.count("lost logins: answer read, killed while the disk held the save's write or rename")
            else:
                late = (killed_at - rotation["answered"]) * 1000
                own_ms = "?" if own is None else f"{own * 1000:.2f}"
                self.problems.append(f"login lost after kimi-tray had read the answer (killed {late:.2f} "
                                     f"ms after it was sent, {own_ms} ms not counting CPU waits, in "
                                     f"system call {syscall}; {mode})")
                self.count("lost logins: outside the network's window")
        self.login()

    def age_temp_files(self) -> set[str]:
        """Make the temp files a kill left look older than a minute, as they will be by the next
        start in real life; returns their names."""
        temps = [p for p in self.cred.parent.iterdir() if ".tmp." in p.name]
        temps += [p for p in (self.home / ".local/state/kimi-tray").glob("*.tmp.*")]
        old = time.time() - 120
        for path in temps:
            os.utime(path, (old, old))
        return {str(p) for p in temps}


def test_kill_9_anywhere_loses_no_login_outside_the_networks_window(env, tmp_path, witness) -> None:
    workers = [Worker(tmp_path / f"w{i}", env, witness) for i in range(WORKERS)]
    runs = scaled(RUNS) // WORKERS
    temps_seen: list[set[str]] = [set() for _ in range(WORKERS)]

    def work(index: int) -> None:
        worker = workers[index]
        for _ in range(runs):
            temps_seen[index] |= worker.age_temp_files()
            worker.one_run()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    leftovers = []
    for worker in workers:
        worker.age_temp_files()
        status = run(["status"], worker.env)
        witness.output("status after the kills", status)
        leftovers += [p.name for p in worker.cred.parent.iterdir() if ".tmp." in p.name]
        for server in [worker.server]:
            server.stop()
    problems = [p for w in workers for p in w.problems]
    for worker in workers:
        for key, value in worker.tally.items():
            FIGURES[key] += value
    FIGURES["kill -9 runs"] += runs * WORKERS
    FIGURES["kill -9: temp files left by a kill (swept at the next start)"] += sum(map(len, temps_seen))
    FIGURES["kill -9: temp files left after the next start"] += len(leftovers)
    FIGURES["lost logins: outside the network's window"] += 0
    FIGURES["corrupt or empty files"] += 0
    assert not leftovers, leftovers
    assert not problems, problems[:10]
