#!/usr/bin/env bash
# Installs kimi-tray for this user and starts it: the tray icon on a desktop, the headless
# daemon (a systemd user service where there is one, else a crontab @reboot entry) on a server.
#
#   ./install.sh              install, or upgrade and restart a running tray or daemon
#   ./install.sh --no-start   install only
#   ./install.sh --uninstall  remove kimi-tray (asks before removing state and config)
#
# Real tray menus on Linux need PyGObject, which has no wheels: we use the system's python3-gi
# through a virtualenv with --system-site-packages. Without it the icon still shows (no menu;
# a click renews).
set -euo pipefail
cd "$(dirname "$0")"

prefix=${KIMI_TRAY_PREFIX:-$HOME/.local/share/kimi-tray}
bin_dir=$HOME/.local/bin
venv=$prefix/venv

start=1
case ${1:-} in
  --no-start) start=0 ;;
  --uninstall)
    shift
    if [[ -x $venv/bin/kimi-tray ]]; then
      exec "$venv/bin/kimi-tray" uninstall "$@"
    fi
    echo "kimi-tray is not installed in $venv; removing what may be left of it."
    rm -f "$bin_dir/kimi-tray" "${XDG_CONFIG_HOME:-$HOME/.config}/autostart/kimi-tray.desktop"
    # Only what this script put there: a KIMI_TRAY_PREFIX may hold other things.
    rm -rf "$venv" "$prefix/pip.log"
    rmdir "$prefix" 2>/dev/null || true
    exit 0 ;;
  "") ;;
  *) echo "usage: ./install.sh [--no-start | --uninstall [--yes] [--keep-data] [--keep-openclaw-profile]]" >&2; exit 2 ;;
esac

sudo_cmd=""
[[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
have_display() { [[ -n ${DISPLAY:-} || -n ${WAYLAND_DISPLAY:-} ]]; }
have_user_systemd() { command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1; }

if command -v apt-get >/dev/null && command -v dpkg-query >/dev/null; then
  packages=(python3-venv)
  if have_display; then
    packages+=(python3-gi gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1 libnotify-bin xdg-utils)
  fi
  missing=()
  for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "Installing system packages: ${missing[*]}"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# The system interpreter sees python3-gi; fall back to whatever python3 is first on PATH.
python=python3
if [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c "import gi" 2>/dev/null; then
  python=/usr/bin/python3
fi
"$python" -c "import sys; sys.exit(sys.version_info < (3, 10))" || {
  echo "kimi-tray needs Python 3.10 or newer; $python is $($python --version 2>&1)." >&2; exit 1; }

# An upgrade: note what runs now (tray or daemon) and stop it after installing, so it restarts
# on the new code instead of running the old one until the next login.
running_pid="" running_mode=""
if [[ -x $venv/bin/python ]]; then
  read -r running_pid running_mode < <("$venv/bin/python" - <<'PY' 2>/dev/null || true
from kimi_tray.core.config import load_settings
from kimi_tray.platform.single_instance import running_instance
holder = running_instance(load_settings().state_dir)
print(f"{holder.pid} {holder.mode.split()[0]}" if holder and holder.pid else "")
PY
) || true
fi

echo "Installing kimi-tray into $venv"
mkdir -p "$prefix" "$bin_dir"
"$python" -m venv --system-site-packages "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# shellcheck disable=SC2086  # KIMI_TRAY_PIP_OPTIONS is a list of options
"$venv/bin/python" -m pip install -q ${KIMI_TRAY_PIP_OPTIONS:-} . >"$prefix/pip.log" 2>&1 || {
  cat "$prefix/pip.log" >&2; exit 1; }
ln -sf "$venv/bin/kimi-tray" "$bin_dir/kimi-tray"
echo "Installed: $bin_dir/kimi-tray ($("$venv/bin/kimi-tray" --version))"
"$venv/bin/python" -c "import gi" 2>/dev/null || \
  echo "Note: python3-gi is not available to kimi-tray, so the tray icon will have no menu."
case ":$PATH:" in
  *":$bin_dir:"*) ;;
  *) echo "Warning: $bin_dir is not on your PATH, so \`kimi-tray\` is not found in a new terminal."
     echo "  Add it:  echo 'export PATH=\"\$HOME/.local/bin:\$PATH\"' >> ~/.profile  (then log in again)"
     echo "  Or run it by its full path: $bin_dir/kimi-tray" ;;
esac

if [[ -n $running_pid ]]; then
  echo "Stopping the running kimi-tray $running_mode (pid $running_pid) to restart it on the new code."
  if [[ $running_mode == daemon ]] && have_user_systemd && systemctl --user is-active -q kimi-tray.service; then
    systemctl --user restart kimi-tray.service
    running_pid=""
  else
    kill -TERM "$running_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$running_pid" 2>/dev/null || break; sleep 0.1; done
  fi
fi

[[ $start -eq 1 || -n $running_pid ]] || exit 0
if have_display && [[ $running_mode != daemon ]]; then
  "$venv/bin/kimi-tray" autostart on
  nohup "$venv/bin/kimi-tray" >/dev/null 2>&1 &
  sleep 2
  "$venv/bin/kimi-tray" status || true
  echo "kimi-tray is running: look for its icon in the tray (GNOME needs the AppIndicator extension)."
elif have_user_systemd; then
  "$venv/bin/kimi-tray" autostart on --daemon
  systemctl --user daemon-reload
  systemctl --user enable --now kimi-tray.service
  systemctl --user restart kimi-tray.service
  echo "kimi-tray daemon is running as a systemd user service: journalctl --user -u kimi-tray -f"
  echo "To keep it running while you are logged out: loginctl enable-linger $USER"
else
  log_dir=${XDG_STATE_HOME:-$HOME/.local/state}/kimi-tray/log
  nohup "$venv/bin/kimi-tray" daemon >/dev/null 2>&1 &
  echo "No graphical session and no systemd user session: started the daemon in the background"
  echo "(pid $!; log in $log_dir). To start it yourself: nohup $bin_dir/kimi-tray daemon &"
  cron_line="@reboot $venv/bin/kimi-tray daemon >/dev/null 2>&1"
  if command -v crontab >/dev/null; then
    existing=$(crontab -l 2>/dev/null || true)
    if ! grep -qF "kimi-tray daemon" <<<"$existing"; then
      printf '%s%s\n' "${existing:+$existing$'\n'}" "$cron_line" | crontab -
      echo "Added a crontab @reboot entry so it starts at boot (see crontab -l; uninstall removes it)."
    fi
  else
    echo "There is no crontab here: start it after each boot, or add: $cron_line"
  fi
fi
