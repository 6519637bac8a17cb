"""Seeded fuzzing of the readers (tools/fuzz_files.py): a few hundred mutated projects and pictures;
only the project's own errors may come out, and no case may run past its time bound."""
import pytest

from tools import fuzz_files

BOUND_S = 3.0  # per case; a hang is a failure, not a slow test


@pytest.fixture(scope="module")
def report():
    return fuzz_files.fuzz(n_ora=300, n_images=300, seed=0, bound=BOUND_S)


@pytest.mark.parametrize("reader", ["ora", "engine-image", "editor-image"])
def test_only_own_errors_and_no_hangs(report, reader):
    r = report[reader]
    assert r["cases"] == 300
    assert r["outcomes"].get("raw exception", 0) == 0, r["raw"]
    assert r["outcomes"].get("hang", 0) == 0, r["raw"]
    # The mutants reach both sides: some still read, most are refused with a message.
    assert r["outcomes"].get("ok", 0) > 0 and r["outcomes"].get("own error", 0) > 0


def test_the_fuzzer_finds_what_it_should():
    """Control: the same mutants through the reader without its error mapping (the inner _read)
    do raise raw exceptions, so a pass above means the mapping works, not that they are harmless."""
    import io
    import zipfile

    from editor_app import ora

    def unguarded(data, label):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return ora._read(zf, "x", None, lambda: False, ora.DEFAULT_LIMITS)
    r = fuzz_files.run_cases(list(fuzz_files.project_cases(300, seed=0)), unguarded, (ora.OraError,), BOUND_S)
    assert r["outcomes"].get("raw exception", 0) > 0
