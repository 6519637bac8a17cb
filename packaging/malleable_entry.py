"""Entry script of the bundled application (PyInstaller). One program, two names:

    malleable                 the editor window
    malleable --self-test     one demo edit, headless; exit 0 when the build works (also
                              accepted by malleable-edit)
    malleable --cli ARGS...   the command line (same as malleable-edit ARGS...)
    malleable-edit ARGS...    the command line: a symlink to malleable on Linux/macOS (dispatch
                              on the name it was started by), malleable-edit.cmd on Windows

Dispatch happens before any heavy import, so --self-test and the CLI never load Qt."""
import os
import sys


def _program_name() -> str:
    name = (sys.argv[0] or sys.executable).replace("\\", "/").rsplit("/", 1)[-1].lower()
    return name[:-4] if name.endswith(".exe") else name


def main() -> int:
    args = sys.argv[1:]
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:  # a windowed (no console) executable on Windows/macOS
            setattr(sys, name, open(os.devnull, "w"))
    if args[:1] == ["--self-test"]:  # under either name: malleable.exe has no console on Windows
        from editor_app.self_test import run_self_test

        return run_self_test()
    if _program_name().startswith("malleable-edit"):
        from editor_app.cli import main as cli_main

        return cli_main(args)
    if args[:1] == ["--cli"]:
        from editor_app.cli import main as cli_main

        return cli_main(args[1:])
    try:
        from editor_app.main import main as gui_main
    except ModuleNotFoundError as e:
        if e.name not in ("editor_app.main",):
            raise
        sys.stderr.write("malleable: this build has no editor window (editor_app.main is missing); "
                         "use --self-test or --cli.\n")
        return 1
    return gui_main() or 0


if __name__ == "__main__":
    if sys.platform == "win32" or getattr(sys, "frozen", False):
        # Worker processes (torch, tokenizers) re-running a frozen entry script must not start the app.
        import multiprocessing

        multiprocessing.freeze_support()
    sys.exit(main())
