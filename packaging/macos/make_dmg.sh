#!/usr/bin/env bash
# macOS: dist/Malleable.app (made by the spec's BUNDLE step) -> dist/Malleable-VERSION-macos-ARCH.dmg,
# a drag-to-Applications disk image. Runs on macOS only (hdiutil); not tested on Linux.
# Unsigned: artists open it the first time with right-click > Open (signing/notarisation need an
# Apple Developer ID: codesign --deep --options runtime, then xcrun notarytool; not done here).
# Usage: packaging/macos/make_dmg.sh [DIST_DIR]   (default: dist)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DIST="$(cd "${1:-$ROOT/dist}" && pwd)"
APP="$DIST/Malleable.app"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -1)"
DMG="$DIST/Malleable-$VERSION-macos-$(uname -m).dmg"
[ -d "$APP" ] || { echo "make_dmg: no $APP (run packaging/build.sh on macOS first)" >&2; exit 1; }

"$APP/Contents/MacOS/malleable" --self-test   # a broken app must not be shipped

STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
rm -f "$DMG"
hdiutil create -volname "Malleable $VERSION" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov "$DMG"
echo "$DMG"
