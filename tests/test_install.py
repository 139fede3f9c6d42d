"""install.sh and `kimi-tray uninstall` for real, in a temp HOME on a machine without a display."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kimi_tray.platform.single_instance import Holder, running_instance
from tests.conftest import ROOT, wait_for, write_fake_openclaw

CRONTAB = """#!/bin/sh
# crontab stand-in: one user's table in $CRONTAB_FILE
case "$1" in
  -l) if [ -f "$CRONTAB_FILE" ]; then cat "$CRONTAB_FILE"; else echo "no crontab" >&2; exit 1; fi ;;
  -) cat > "$CRONTAB_FILE.new" && mv "$CRONTAB_FILE.new" "$CRONTAB_FILE" ;;
esac
"""


@pytest.fixture
def server_env(tmp_path: Path, home: Path, oauth_server) -> dict[str, str]:
    """A server: no display, no systemd user session, ~/.local/bin not on PATH, a crontab."""
    bin_dir = tmp_path / "bin"
    write_fake_openclaw(bin_dir)
    (bin_dir / "crontab").write_text(CRONTAB)
    (bin_dir / "crontab").chmod(0o755)
    (tmp_path / "crontab.txt").write_text("MAILTO=''\n")
    drop = ("DISPLAY", "WAYLAND_DISPLAY", "PYTHONPATH", "VIRTUAL_ENV", "DBUS_SESSION_BUS_ADDRESS")
    keep = {k: v for k, v in os.environ.items() if k not in drop}
    return {**keep, "HOME": str(home), "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "XDG_CONFIG_HOME": str(home / ".config"), "XDG_STATE_HOME": str(home / ".local" / "state"),
            "XDG_DATA_HOME": str(home / ".local" / "share"), "KIMI_CODE_OAUTH_HOST": oauth_server.url,
            "CRONTAB_FILE": str(tmp_path / "crontab.txt"), "FAKE_OPENCLAW_LOG": str(tmp_path / "oc.jsonl"),
            "XDG_RUNTIME_DIR": str(tmp_path / "no-runtime")}


@pytest.fixture
def no_daemon_left(home: Path) -> Iterator[None]:
    """Whatever happens in the test, the daemon install.sh started does not outlive it."""
    yield
    holder = running_instance(state_dir(home))
    if holder is not None and holder.pid:
        os.kill(holder.pid, signal.SIGTERM)


def install(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "install.sh"), *args], env=env, cwd=env["HOME"], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)


def state_dir(home: Path) -> Path:
    return home / ".local" / "state" / "kimi-tray"


NO_HOLDER = Holder(0, None, "", "")


def test_install_on_a_server_returns_upgrade_restarts_uninstall_leaves_nothing(
        server_env: dict[str, str], home: Path, tmp_path: Path, no_daemon_left: None) -> None:
    first = install(server_env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert ".local/bin is not on your PATH" in first.stdout
    assert "started the daemon in the background" in first.stdout
    assert "crontab @reboot entry" in first.stdout
    venv_script = home / ".local" / "share" / "kimi-tray" / "venv" / "bin" / "kimi-tray"
    assert (tmp_path / "crontab.txt").read_text().splitlines() == [
        "MAILTO=''", f"@reboot {venv_script} daemon >/dev/null 2>&1"]
    # The lock is taken a moment before the record naming its holder is written.
    assert wait_for(lambda: (running_instance(state_dir(home)) or NO_HOLDER).pid, timeout=20)
    old = running_instance(state_dir(home))
    assert old.mode == "daemon" and old.program == str(venv_script)

    second = install(server_env)  # an upgrade while the daemon runs: it restarts on the new code
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"Stopping the running kimi-tray daemon (pid {old.pid})" in second.stdout
    assert wait_for(lambda: (running_instance(state_dir(home)) or old).pid != old.pid, timeout=20)
    assert (tmp_path / "crontab.txt").read_text().count("@reboot") == 1

    # Our OpenClaw profile, as renewals leave it.
    openclaw = home / ".openclaw"
    openclaw.mkdir()
    (openclaw / "fake-store.json").write_text(json.dumps({
        "kimi:oauth": {"label": "x", "expiresAt": 0}, "kimi:default": {"label": "y", "expiresAt": 0}}))
    subprocess.run([str(venv_script), "autostart", "on"], env=server_env, check=True, timeout=60)
    (home / ".config" / "kimi-tray").mkdir(parents=True)
    (home / ".config" / "kimi-tray" / "config.toml").write_text("http_timeout = 10\n")
    # Things that are not ours stay.
    (home / ".config" / "other.conf").write_text("keep")

    removed = install(server_env, "--uninstall", "--yes")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert wait_for(lambda: running_instance(state_dir(home)) is None, timeout=10)
    assert "Removed OpenClaw's kimi:oauth profile" in removed.stdout
    assert json.loads((openclaw / "fake-store.json").read_text()).keys() == {"kimi:default"}
    assert "kimi-tray" not in (tmp_path / "crontab.txt").read_text()
    left = sorted(str(p.relative_to(home)) for p in home.rglob("*") if "kimi" in str(p.relative_to(home)))
    assert left == [], left
    assert (home / ".config" / "other.conf").read_text() == "keep"


def test_uninstall_without_a_terminal_keeps_data_unless_told(env: dict[str, str], home: Path) -> None:
    from tests.conftest import run_cli

    assert run_cli(["autostart", "on"], env).returncode == 0
    assert run_cli(["autostart", "on", "--daemon"], env).returncode == 0
    (home / ".config" / "kimi-tray").mkdir(parents=True)
    (home / ".config" / "kimi-tray" / "config.toml").write_text("")
    result = run_cli(["uninstall", "--keep-openclaw-profile"], env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert not (home / ".config" / "autostart" / "kimi-tray.desktop").exists()
    assert not (home / ".config" / "systemd" / "user" / "kimi-tray.service").exists()
    assert "Kept" in result.stdout and (home / ".config" / "kimi-tray" / "config.toml").exists()


@pytest.mark.desktop
def test_upgrade_restarts_a_running_tray_on_the_new_code(server_env: dict[str, str], home: Path,
                                                         desktop, no_daemon_left: None) -> None:
    env = {**server_env, **desktop.env}
    first = install(env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert wait_for(lambda: (running_instance(state_dir(home)) or NO_HOLDER).pid, timeout=20)
    old = running_instance(state_dir(home))
    assert old.mode == "tray"
    entry = home / ".config" / "autostart" / "kimi-tray.desktop"
    assert entry.exists()
    second = install(env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"Stopping the running kimi-tray tray (pid {old.pid})" in second.stdout
    assert wait_for(lambda: (running_instance(state_dir(home)) or old).pid != old.pid, timeout=20)
    assert running_instance(state_dir(home)).mode == "tray"
    removed = install(env, "--uninstall", "--yes", "--keep-openclaw-profile")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not entry.exists() and running_instance(state_dir(home)) is None


def test_uninstall_removes_only_our_files_from_directories_the_user_chose(
        env: dict[str, str], home: Path) -> None:
    """A config pointing log_dir and state_dir at shared folders: uninstall --yes removes our
    log, state and lock files there and leaves the folders and everything else in them."""
    from tests.conftest import run_cli

    logs, state = home / "logs", home / "var"
    logs.mkdir()
    state.mkdir()
    (logs / "other-app.log").write_text("not ours")
    (state / "notes.txt").write_text("not ours")
    (home / ".config" / "kimi-tray").mkdir(parents=True)
    (home / ".config" / "kimi-tray" / "config.toml").write_text(
        f'log_dir = "{logs}"\nstate_dir = "{state}"\n')
    for ours in (logs / "kimi-tray.log", logs / "kimi-tray.log.1", state / "state.json",
                 state / "usage.json", state / "instance.lock"):
        ours.write_text("{}")
    result = run_cli(["uninstall", "--yes", "--keep-openclaw-profile"], env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in logs.iterdir()) == ["other-app.log"]
    assert sorted(p.name for p in state.iterdir()) == ["notes.txt"]
    assert not (home / ".config" / "kimi-tray").exists()


def test_daemon_unit_counts_as_on_only_while_systemd_would_start_it(env: dict[str, str], home: Path) -> None:
    """A unit file alone starts nothing: systemd starts a user unit at boot through the
    default.target.wants link that `systemctl --user enable` makes. Here (no systemd user
    manager) kimi-tray makes that link itself, and a unit without it is reported as off."""
    from tests.conftest import run_cli

    unit_dir = home / ".config" / "systemd" / "user"
    on = run_cli(["autostart", "on", "--daemon"], env)
    assert on.returncode == 0, on.stderr
    link = unit_dir / "default.target.wants" / "kimi-tray.service"
    assert link.is_symlink() and link.resolve() == (unit_dir / "kimi-tray.service").resolve()
    assert "ok    daemon unit:" in run_cli(["doctor"], env).stdout
    assert "starts: the daemon unit" in run_cli(["status"], env).stdout

    link.unlink()  # what `systemctl --user disable kimi-tray` does
    doctor = run_cli(["doctor"], env).stdout
    assert "daemon unit:" not in doctor and "nothing starts kimi-tray" in doctor, doctor
    assert "starts: nothing at login" in run_cli(["status"], env).stdout
    assert run_cli(["autostart", "status", "--daemon"], env).stdout.startswith("Daemon at boot: off")

    result = run_cli(["uninstall", "--yes", "--keep-openclaw-profile"], env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert not (unit_dir / "kimi-tray.service").exists()  # a disabled unit is still ours to remove
    assert not (unit_dir / "default.target.wants").exists()


def test_uninstall_leaves_what_else_is_in_a_chosen_prefix(env: dict[str, str], home: Path) -> None:
    """KIMI_TRAY_PREFIX may name a folder that holds other things: both uninstall paths remove our
    venv and pip log from it, not the folder."""
    from tests.conftest import run_cli

    for how in ("cli", "install.sh"):
        prefix = home / "tools"
        (prefix / "venv" / "bin").mkdir(parents=True)
        (prefix / "pip.log").write_text("")
        (prefix / "other-tool").write_text("not ours")
        run_env = {**env, "KIMI_TRAY_PREFIX": str(prefix)}
        if how == "cli":
            result = run_cli(["uninstall", "--yes", "--keep-openclaw-profile"], run_env,
                             stdin=subprocess.DEVNULL)
        else:  # no working venv: install.sh removes what is left itself
            result = install(run_env, "--uninstall", "--yes")
        assert result.returncode == 0, result.stdout + result.stderr
        assert sorted(p.name for p in prefix.iterdir()) == ["other-tool"], how


def test_status_and_doctor_see_and_check_the_crontab_reboot_line(server_env: dict[str, str], home: Path,
                                                                   tmp_path: Path) -> None:
    """On a server without systemd, install.sh's crontab @reboot line is what starts the daemon:
    status and doctor name it and run its command with --version; a broken one fails."""
    from tests.conftest import run_cli

    program = tmp_path / "venv" / "bin" / "kimi-tray"  # a stand-in for the installed script
    program.parent.mkdir(parents=True)
    program.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "kimi-tray 0.1.0"\n')
    program.chmod(0o755)
    crontab = tmp_path / "crontab.txt"
    crontab.write_text(f"MAILTO=''\n@reboot {program} daemon >/dev/null 2>&1\n")
    env = {**server_env, "PYTHONPATH": str(ROOT)}
    status = run_cli(["status"], env).stdout
    assert "starts: the daemon from the crontab @reboot line" in status, status
    doctor = run_cli(["doctor"], env).stdout
    assert f"ok    daemon at boot: the crontab @reboot line runs {program} daemon" in doctor, doctor
    assert "nothing starts kimi-tray" not in doctor

    program.unlink()  # the venv is gone, the line stays
    doctor = run_cli(["doctor"], env)
    assert doctor.returncode == 1
    assert f"fail  daemon at boot: the crontab @reboot line: {program} does not exist" in doctor.stdout

    crontab.write_text(f"MAILTO=''\n# @reboot {program} daemon\n")  # commented out: starts nothing
    assert "starts: nothing at login" in run_cli(["status"], env).stdout
    assert "daemon at boot" not in run_cli(["doctor"], env).stdout
