"""A sixth method is one folder under core/methods/ and nothing else: a toy method package written
to a temporary folder, put on core.methods' path and rediscovered, shows up in `malleable-edit`
(it runs, and `methods --json` lists it) and in the editor's Edit panel with its fields."""
import json
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import core.methods
from core import registry
from editor_app.cli import main
from tests.tiny import save_tiny_model

TOY = "toy_negative"
METHOD_PY = '''
"""`toy-negative`: the picture's negative, blended in by `amount` (a test's sixth method)."""
from __future__ import annotations

from dataclasses import dataclass

from ...context import EditContext, MethodOutput
from ...params import MethodParams, param
from ...registry import Method, register


@dataclass(frozen=True, kw_only=True)
class ToyParams(MethodParams):
    amount: float = param(1.0, "How much of the negative to blend in.", min=0.0, max=1.0)
    note: str = param("", "Unused text, to show a second field.", kind="text")


def run(ctx: EditContext, p: ToyParams) -> MethodOutput:
    ctx.reporter.stage("edit", 1)
    return MethodOutput(ctx.image * (1.0 - 2.0 * p.amount))


METHOD = register(Method(name="toy-negative", label="Toy Negative", params=ToyParams, run=run,
                         stages=("edit",), description="The negative of the picture."))
'''


@pytest.fixture
def toy_method(tmp_path, monkeypatch):
    folder = tmp_path / "plugins" / TOY
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("from .method import METHOD  # noqa: F401\n")
    (folder / "method.py").write_text(textwrap.dedent(METHOD_PY))
    # The registry and the package path are restored afterwards: other tests never see the toy.
    registry.all_methods()  # the built-in methods registered first, so the restored registry has them
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    monkeypatch.setattr(core.methods, "__path__", [*core.methods.__path__, str(folder.parent)])
    registry.rediscover()
    yield registry.get_method("toy-negative")
    for name in [m for m in sys.modules if m.startswith(f"core.methods.{TOY}")]:
        del sys.modules[name]
    if hasattr(core.methods, TOY):
        delattr(core.methods, TOY)


def test_a_method_folder_is_found_by_the_cli(toy_method, tmp_path, capsys):
    assert toy_method.label == "Toy Negative"
    assert main(["methods", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert [p["name"] for p in listed["toy-negative"]["parameters"]][:2] == ["amount", "note"]

    src = (np.random.RandomState(0).rand(32, 32, 3) * 255).astype(np.uint8)
    Image.fromarray(src).save(tmp_path / "in.png")
    model = save_tiny_model(tmp_path / "tiny-model")
    code = main(["toy-negative", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--model", str(model),
                 "--amount", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    with Image.open(tmp_path / "out.png") as im:
        out = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert np.abs(out - (255 - src.astype(np.int16))).max() <= 2  # the toy's own edit ran


def test_a_method_folder_is_offered_by_the_edit_panel(toy_method, qtbot):
    from widgets.edit_panel import EditPanel

    panel = EditPanel()
    qtbot.addWidget(panel)
    panel.select_method("toy-negative")
    assert panel.method_combo.currentText() == "Toy Negative"
    form = panel.form
    assert form.editor("amount").value() == 1.0 and form.editor("amount").maximum() == 1.0
    assert form.editor("note") is not None
    form.set_values({"amount": 0.25})
    assert toy_method.params.from_dict(form.values()).amount == 0.25


def test_the_toy_is_gone_afterwards():
    assert "toy-negative" not in {m.name for m in registry.all_methods()}
