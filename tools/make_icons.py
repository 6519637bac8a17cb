"""Render resources/icons/malleable.svg to the PNG sizes the installers use (Qt's SVG renderer,
so the PNGs match the SVG) and to malleable.ico (Windows). Run after editing the SVG:

    QT_QPA_PLATFORM=offscreen python -m tools.make_icons
"""
from pathlib import Path

ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"
SIZES = (256, 48)


def main() -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 (QPainter needs one)
    renderer = QSvgRenderer(str(ICONS / "malleable.svg"))
    if not renderer.isValid():
        raise SystemExit("malleable.svg is not a valid SVG")
    for size in SIZES:
        img = QImage(size, size, QImage.Format_ARGB32)
        img.fill(Qt.transparent)
        painter = QPainter(img)
        painter.setRenderHint(QPainter.Antialiasing)
        renderer.render(painter)
        painter.end()
        out = ICONS / f"malleable-{size}.png"
        img.save(str(out))
        print(out)
    from PIL import Image

    ico = ICONS / "malleable.ico"
    Image.open(ICONS / "malleable-256.png").save(ico, sizes=[(s, s) for s in (256, 128, 64, 48, 32, 16)])
    print(ico)


if __name__ == "__main__":
    main()
