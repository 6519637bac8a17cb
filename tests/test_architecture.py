"""The layering holds: the import-linter contracts in pyproject.toml, no import cycles inside core,
and widgets importing only core, Qt, superqt, numpy and the standard library."""
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def _lint(config: Path, capsys) -> tuple[bool, str]:
    from importlinter.application.use_cases import lint_imports
    from importlinter.configuration import configure

    configure()
    ok = lint_imports(config_filename=str(config), no_logo=True, cache_dir=None)
    return ok, capsys.readouterr().out


def test_import_contracts_are_kept(capsys):
    ok, report = _lint(ROOT / "pyproject.toml", capsys)
    assert ok, report
    assert "0 broken" in report


def test_the_linter_sees_a_broken_contract(tmp_path, capsys):
    # The control: the same graph with the layers upside down must fail, or the check above
    # would pass on an empty graph too.
    config = tmp_path / "upside_down.toml"
    config.write_text('[tool.importlinter]\nroot_packages = ["core", "editor_app"]\n\n'
                      '[[tool.importlinter.contracts]]\nname = "upside down"\ntype = "layers"\n'
                      'layers = ["core", "editor_app"]\n')
    ok, report = _lint(config, capsys)
    assert not ok and "BROKEN" in report and "editor_app" in report


def test_core_has_no_import_cycles():
    """Every import a -> b inside core, with a path back from b to a, is a cycle (imports under
    TYPE_CHECKING are annotations, not dependencies)."""
    graph = grimp.build_graph("core", exclude_type_checking_imports=True)
    cycles = []
    for a in sorted(graph.modules):
        for b in sorted(graph.find_modules_directly_imported_by(a)):
            back = graph.find_shortest_chain(importer=b, imported=a)
            if back:
                cycles.append(f"{a} -> {' -> '.join(back)}")
    assert not cycles, "import cycles in core:\n" + "\n".join(cycles)


WIDGETS_MAY_IMPORT = {"core", "widgets", "PySide6", "shiboken6", "superqt", "numpy"}


def test_widgets_import_only_core_qt_and_superqt():
    graph = grimp.build_graph("widgets", "core", include_external_packages=True,
                              exclude_type_checking_imports=True)
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    wrong = sorted(f"{m} imports {imported}" for m in graph.find_descendants("widgets") | {"widgets"}
                   for imported in graph.find_modules_directly_imported_by(m)
                   if imported.split(".")[0] not in WIDGETS_MAY_IMPORT | stdlib)
    assert not wrong, "\n".join(wrong)

