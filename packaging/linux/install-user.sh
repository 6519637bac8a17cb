#!/usr/bin/env bash
# Add Malleable (this unpacked folder) to your desktop's menu, for you only; no root needed.
# Undo with: ./install.sh --uninstall
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
APPS="$DATA/applications"; ICON="$DATA/icons/hicolor/256x256/apps"; BIN="$HOME/.local/bin"
if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$APPS/malleable.desktop" "$ICON/malleable.png" "$BIN/malleable" "$BIN/malleable-edit"
    echo "Malleable removed from the menu (this folder was left as it is)."; exit 0
fi
mkdir -p "$APPS" "$ICON" "$BIN"
ln -sf "$HERE/malleable" "$BIN/malleable"
ln -sf "$HERE/malleable-edit" "$BIN/malleable-edit"
install -m 644 "$HERE/malleable-256.png" "$ICON/malleable.png"
sed -e "s|^Exec=.*|Exec=\"$HERE/malleable\" %F|" -e "s|^TryExec=.*|TryExec=$HERE/malleable|" \
    "$HERE/malleable.desktop" > "$APPS/malleable.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$APPS" || true
echo "Malleable is in your menu; from a terminal: $BIN/malleable (or malleable-edit for the command line)."
