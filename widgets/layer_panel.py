"""The Layers dock: a list of layers (top layer first) with thumbnails, visibility check boxes,
in-place renaming and drag-to-reorder, plus the active layer's opacity."""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QMenu,
                               QSlider, QToolButton, QVBoxLayout, QWidget)


from .canvas_items import _checker_brush
from .compositing import LayerImageCache
from .result_info import describe_result

THUMB = 44
# The right-click menu, from the window's actions (those it has); None is a separator.
CONTEXT_MENU = ("edit_again", None, "duplicate_layer", "rename_layer", "delete_layer", "merge_down", None,
                "select_alpha", None, "layer_mask_add", "mask_from_edit", "layer_mask_edit", "layer_mask_invert",
                "layer_mask_apply", "mask_remove")
LAYER_ID_ROLE = Qt.ItemDataRole.UserRole + 1


class LayerListWidget(QListWidget):
    """Rows are layers top to bottom. A drop asks for a move; the document does it, then the list is
    rebuilt from the document, so the list never disagrees with it."""
    move_requested = Signal(int, int)  # row it was, row it should be

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                             | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.setUniformItemSizes(True)

    def dragEnterEvent(self, event):
        if event.source() is not self:
            event.ignore()  # files from outside: let the main window open them
            return
        super().dragEnterEvent(event)

    def dropEvent(self, event):
        if event.source() is not self:
            event.ignore()
            return
        src = self.currentRow()
        dest = self.drop_row(self.indexAt(event.position().toPoint()), self.dropIndicatorPosition())
        if dest > src:
            dest -= 1  # the row being moved no longer counts above its new place
        event.setDropAction(Qt.DropAction.IgnoreAction)
        event.accept()
        if src >= 0 and dest != src:
            self.move_requested.emit(src, dest)

    def drop_row(self, index, position) -> int:
        P = QAbstractItemView.DropIndicatorPosition
        if not index.isValid() or position == P.OnViewport:
            return self.count()
        return index.row() + (1 if position == P.BelowItem else 0)


class LayerPanel(QWidget):
    def __init__(self, document, actions: dict, parent=None):
        super().__init__(parent)
        self._doc = document
        self._actions = actions
        self._syncing = False
        self._thumbs = LayerImageCache()
        self._thumb_icons: dict[int, tuple[int, QIcon]] = {}
        self._checker = _checker_brush()

        self.list = LayerListWidget(self)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_label = QLabel("100 %")
        self.opacity_label.setMinimumWidth(42)
        row = QHBoxLayout()
        row.addWidget(QLabel("Opacity"))
        row.addWidget(self.opacity_slider, 1)
        row.addWidget(self.opacity_label)
        buttons = QHBoxLayout()
        buttons.setSpacing(1)
        for key in ("add_layer", "duplicate_layer", "merge_down", "raise_layer", "lower_layer", "delete_layer"):
            b = QToolButton()
            b.setDefaultAction(actions[key])
            b.setAutoRaise(True)
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(row)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)

        self.list.currentRowChanged.connect(self._on_current_row)
        self.list.itemChanged.connect(self._on_item_changed)
        self.list.move_requested.connect(self._on_move_requested)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        document.reset.connect(self.rebuild)
        document.layers_changed.connect(self.rebuild)
        document.layer_changed.connect(self._on_layer_changed)
        document.active_layer_changed.connect(self._on_active_changed)
        self.rebuild()

    def _row_to_index(self, row: int) -> int:
        return len(self._doc.layers) - 1 - row

    def _thumbnail(self, layer) -> QIcon:
        hit = self._thumb_icons.get(layer.id)
        if hit and hit[0] == layer.revision:
            return hit[1]
        img: QImage = self._thumbs.image_for(layer)
        dpr = self.devicePixelRatioF() or 1.0
        pm = QPixmap(round(THUMB * dpr), round(THUMB * dpr))
        pm.setDevicePixelRatio(dpr)
        pm.fill(Qt.GlobalColor.transparent)
        scaled = img.scaled(round(THUMB * dpr), round(THUMB * dpr), Qt.AspectRatioMode.KeepAspectRatio,
                            Qt.TransformationMode.SmoothTransformation)
        scaled.setDevicePixelRatio(dpr)
        w, h = scaled.width() / dpr, scaled.height() / dpr
        x, y = (THUMB - w) / 2, (THUMB - h) / 2
        p = QPainter(pm)
        p.fillRect(int(x), int(y), int(w), int(h), self._checker)
        p.drawImage(int(x), int(y), scaled)
        if layer.mask is not None:  # a badge: this layer shows only part of its pixels
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            p.setPen(QColor(20, 20, 20))
            p.setBrush(QColor(240, 240, 240))
            p.drawEllipse(THUMB - 13, THUMB - 13, 11, 11)
            p.setBrush(QColor(20, 20, 20))
            p.drawPie(THUMB - 13, THUMB - 13, 11, 11, 90 * 16, 180 * 16)
        p.end()
        icon = QIcon(pm)
        self._thumb_icons[layer.id] = (layer.revision, icon)
        return icon

    def _fill_item(self, item: QListWidgetItem, layer):
        item.setText(layer.name)
        item.setIcon(self._thumbnail(layer))
        item.setCheckState(Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked)
        tip = f"{layer.name}\nopacity {round(layer.opacity * 100)} %"
        if layer.mask is not None:
            tip += "\nhas a layer mask"
        if layer.metadata.get("method"):
            tip += "\n\n" + describe_result(layer.metadata)
        if layer.group:
            tip += f"\none of the variations “{layer.group}”: tick another to see it instead"
        item.setToolTip(tip)

    def rebuild(self):
        self._syncing = True
        try:
            self.list.clear()
            for layer in reversed(self._doc.layers):
                item = QListWidgetItem()
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable
                              | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsDragEnabled)
                item.setData(LAYER_ID_ROLE, layer.id)
                self._fill_item(item, layer)
                self.list.addItem(item)
            live = {l.id for l in self._doc.layers}
            self._thumbs.forget_missing(live)
            for lid in set(self._thumb_icons) - live:
                del self._thumb_icons[lid]
        finally:
            self._syncing = False
        active = self._doc.active_layer
        self._on_active_changed(active.id if active else -1)

    def _item_for(self, layer_id):
        for row in range(self.list.count()):
            if self.list.item(row).data(LAYER_ID_ROLE) == layer_id:
                return row, self.list.item(row)
        return -1, None

    def _on_layer_changed(self, layer_id):
        row, item = self._item_for(layer_id)
        if item is None:
            return
        self._syncing = True
        try:
            self._fill_item(item, self._doc.layer_by_id(layer_id))
        finally:
            self._syncing = False
        active = self._doc.active_layer
        if active is not None and active.id == layer_id:
            self._show_opacity(active.opacity)

    def _on_active_changed(self, layer_id):
        row, _ = self._item_for(layer_id)
        self._syncing = True
        try:
            self.list.setCurrentRow(row)
        finally:
            self._syncing = False
        active = self._doc.active_layer
        self.opacity_slider.setEnabled(active is not None)
        self._show_opacity(active.opacity if active else 1.0)

    def _show_opacity(self, opacity):
        self.opacity_slider.blockSignals(True)
        self.opacity_slider.setValue(round(opacity * 100))
        self.opacity_slider.blockSignals(False)
        self.opacity_label.setText(f"{round(opacity * 100)} %")

    def _on_current_row(self, row):
        if not self._syncing and row >= 0:
            self._doc.set_active_layer(self.list.item(row).data(LAYER_ID_ROLE))

    def _on_item_changed(self, item):
        if self._syncing:
            return
        layer = self._doc.layer_by_id(item.data(LAYER_ID_ROLE))
        visible = item.checkState() == Qt.CheckState.Checked
        name = item.data(Qt.ItemDataRole.EditRole)
        if visible != layer.visible:
            self._doc.set_layer_visible(layer, visible)
        elif isinstance(name, str) and name.strip() and name != layer.name:
            self._doc.rename_layer(layer, name)
        else:
            self._on_layer_changed(layer.id)  # a rejected edit: show the document's name again

    def _on_move_requested(self, src_row, dest_row):
        layer_id = self.list.item(src_row).data(LAYER_ID_ROLE)
        self._doc.move_layer(layer_id, self._row_to_index(dest_row))

    def context_menu(self) -> QMenu:
        menu = QMenu(self)
        for key in CONTEXT_MENU:
            if key is None:
                if menu.actions() and not menu.actions()[-1].isSeparator():
                    menu.addSeparator()
            elif key in self._actions:
                menu.addAction(self._actions[key])
        return menu

    def _context_menu(self, pos):
        """As in Krita and GIMP: the layer under the mouse becomes the active one, then the menu."""
        item = self.list.itemAt(pos)
        if item is not None:
            self._doc.set_active_layer(item.data(LAYER_ID_ROLE))
        menu = self.context_menu()
        menu.exec(self.list.viewport().mapToGlobal(pos))
        menu.deleteLater()

    def _on_opacity(self, value):
        active = self._doc.active_layer
        if active is not None:
            self.opacity_label.setText(f"{value} %")
            self._doc.set_layer_opacity(active, value / 100.0)
