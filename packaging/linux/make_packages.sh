#!/usr/bin/env bash
# Linux packages from a built bundle (dist/malleable/, made by packaging/build.sh):
#   dist/malleable-VERSION-linux-ARCH.tar.gz   the bundle + malleable.desktop + icons + install.sh
#   dist/malleable_VERSION_DEBARCH.deb         /opt/malleable, /usr/bin/malleable{,-edit}, menu entry, icons
# Usage: packaging/linux/make_packages.sh [DIST_DIR]   (default: dist)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DIST="$(cd "${1:-$ROOT/dist}" && pwd)"
BUNDLE="$DIST/malleable"
HERE="$ROOT/packaging/linux"
ICONS="$ROOT/resources/icons"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -1)"
ARCH="$(uname -m)"
DEBARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
[ -x "$BUNDLE/malleable" ] || { echo "make_packages: no bundle at $BUNDLE (run packaging/build.sh first)" >&2; exit 1; }

# ---- .tar.gz: unpack anywhere and run ./malleable, or ./install.sh for a menu entry --------------
NAME="malleable-$VERSION-linux-$ARCH"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
cp -a "$BUNDLE" "$STAGE/$NAME"
install -m 644 "$HERE/malleable.desktop" "$STAGE/$NAME/malleable.desktop"
install -m 644 "$ICONS/malleable.svg" "$ICONS/malleable-256.png" "$STAGE/$NAME/"
install -m 755 "$HERE/install-user.sh" "$STAGE/$NAME/install.sh"
tar -C "$STAGE" -czf "$DIST/$NAME.tar.gz" "$NAME"
echo "$DIST/$NAME.tar.gz"

# ---- .deb --------------------------------------------------------------------------------------
PKG="$STAGE/deb"
mkdir -p "$PKG/DEBIAN" "$PKG/opt" "$PKG/usr/bin" "$PKG/usr/share/applications" \
         "$PKG/usr/share/icons/hicolor/256x256/apps" "$PKG/usr/share/icons/hicolor/48x48/apps" \
         "$PKG/usr/share/icons/hicolor/scalable/apps"
cp -a "$BUNDLE" "$PKG/opt/malleable"
ln -s /opt/malleable/malleable "$PKG/usr/bin/malleable"
ln -s /opt/malleable/malleable-edit "$PKG/usr/bin/malleable-edit"
install -m 644 "$HERE/malleable.desktop" "$PKG/usr/share/applications/malleable.desktop"
install -m 644 "$ICONS/malleable-256.png" "$PKG/usr/share/icons/hicolor/256x256/apps/malleable.png"
install -m 644 "$ICONS/malleable-48.png" "$PKG/usr/share/icons/hicolor/48x48/apps/malleable.png"
install -m 644 "$ICONS/malleable.svg" "$PKG/usr/share/icons/hicolor/scalable/apps/malleable.svg"
SIZE_KB="$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)"
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$DEBARCH/" -e "s/@SIZE@/$SIZE_KB/" "$HERE/deb/control.in" > "$PKG/DEBIAN/control"
install -m 755 "$HERE/deb/postinst" "$HERE/deb/postrm" "$PKG/DEBIAN/"
chmod -R u+rwX,go+rX,go-w "$PKG"
DEB="$DIST/malleable_${VERSION}_${DEBARCH}.deb"
# gzip, not the default zstd/xz: much faster on a ~1 GB payload, and every dpkg reads it.
dpkg-deb --root-owner-group -Zgzip --build "$PKG" "$DEB" >/dev/null
echo "$DEB"
