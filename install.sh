#!/usr/bin/env bash
# Installs kimi-tray for this user and starts it: the tray icon on a desktop, the headless
# daemon (as a systemd user service where there is one) on a server.
#
#   ./install.sh            install (or upgrade) and start
#   ./install.sh --no-start install only
#
# Real tray menus on Linux need PyGObject, which has no wheels: we use the system's python3-gi
# through a virtualenv with --system-site-packages. Without it the icon still shows (no menu;
# a click renews).
set -euo pipefail
cd "$(dirname "$0")"
start=1
[[ ${1:-} == --no-start ]] && start=0

prefix=${KIMI_TRAY_PREFIX:-$HOME/.local/share/kimi-tray}
bin_dir=$HOME/.local/bin
venv=$prefix/venv

sudo_cmd=""
[[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
have_display() { [[ -n ${DISPLAY:-} || -n ${WAYLAND_DISPLAY:-} ]]; }

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

echo "Installing kimi-tray into $venv"
mkdir -p "$prefix" "$bin_dir"
"$python" -m venv --system-site-packages "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q . >"$prefix/pip.log" 2>&1 || { cat "$prefix/pip.log" >&2; exit 1; }
ln -sf "$venv/bin/kimi-tray" "$bin_dir/kimi-tray"
echo "Installed: $bin_dir/kimi-tray ($("$venv/bin/kimi-tray" --version))"
"$venv/bin/python" -c "import gi" 2>/dev/null || \
  echo "Note: python3-gi is not available to kimi-tray, so the tray icon will have no menu."

[[ $start -eq 1 ]] || exit 0
if have_display; then
  "$venv/bin/kimi-tray" autostart on
  nohup "$venv/bin/kimi-tray" >/dev/null 2>&1 &
  sleep 2
  "$venv/bin/kimi-tray" status || true
  echo "kimi-tray is running: look for its icon in the tray (GNOME needs the AppIndicator extension)."
elif command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1; then
  unit_dir=${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user
  mkdir -p "$unit_dir"
  sed "s|@KIMI_TRAY@|$venv/bin/kimi-tray|" packaging/linux/kimi-tray.service > "$unit_dir/kimi-tray.service"
  systemctl --user daemon-reload
  systemctl --user enable --now kimi-tray.service
  echo "kimi-tray daemon is running as a systemd user service: journalctl --user -u kimi-tray -f"
else
  echo "No graphical session and no systemd user session: running the daemon here (Ctrl-C stops it)."
  exec "$venv/bin/kimi-tray" daemon
fi
