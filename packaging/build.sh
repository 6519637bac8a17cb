#!/usr/bin/env bash
# Build Malleable's one-folder bundle (dist/malleable/) and, on Linux, its .tar.gz and .deb.
#
#   packaging/build.sh                 build venv .venv-build (torch==2.13.0), bundle, packages
#   PYTHON=/path/to/python packaging/build.sh   use an existing environment that has pyinstaller
#                                      and Malleable installed (skips the venv)
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 packaging/build.sh
#                                      a CUDA build (see packaging/README.md)
#
# Never install PyInstaller into the development .venv: the bundle takes whatever that venv holds.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)

if [ -z "${PYTHON:-}" ]; then
    VENV="${BUILD_VENV:-$ROOT/.venv-build}"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    PYTHON="$VENV/bin/python"
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        "$PYTHON" -m pip install -q --index-url "$TORCH_INDEX_URL" torch==2.13.0
    fi
    "$PYTHON" -m pip install -q torch==2.13.0 -e . pyinstaller
fi

"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" packaging/malleable.spec

case "$(uname -s)" in
    Linux) packaging/linux/make_packages.sh "$ROOT/dist" ;;
    Darwin) packaging/macos/make_dmg.sh "$ROOT/dist" ;;
esac

echo "bundle: $ROOT/dist/malleable ($(du -sh "$ROOT/dist/malleable" | cut -f1)), built in $(( $(date +%s) - START )) s"
