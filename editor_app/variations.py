"""Groups of variations: "Run ×4" lands the same edit with four seeds as layers sharing a group name
(Layer.group), stacked together above their source, the first shown. Showing one hides the others
(Document.set_layer_visible), so ticking a layer's box in the Layers panel picks it; Layer ▸ Keep
Only This Variation deletes the rest. In a project file a group is a nested stack, as Krita and
GIMP show groups, with the group name in Malleable's metadata."""
from __future__ import annotations


def members(doc, group: str) -> list:
    return [layer for layer in doc.layers if group and layer.group == group]


def keep_only(doc, layer) -> None:
    """Keep `layer` of its group, shown and ungrouped; delete the other variations. One undo entry."""
    group = layer.group
    if not group:
        return
    stack = doc.undo_stack
    stack.beginMacro(f"Keep Variation “{layer.name}”")
    try:
        for other in members(doc, group):
            if other is not layer:
                doc.remove_layer(other)
        doc.set_layer_group(layer, "")
        doc.set_layer_visible(layer, True)
    finally:
        stack.endMacro()
    doc.set_active_layer(layer)
