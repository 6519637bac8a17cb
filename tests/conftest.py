import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach a model hub

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def cycles_collected_on_the_main_thread():
    """As in the application (editor_app/gui_gc.py): no automatic collection, so the engine's
    threads never collect (and never destroy a test's Qt objects off the GUI thread); the main
    thread collects what is due after every test (`collect_after_each_test`)."""
    import gc

    was = gc.isenabled()
    gc.disable()
    yield
    if was:
        gc.enable()


@pytest.fixture(autouse=True)
def collect_after_each_test():
    from editor_app.gui_gc import collect_if_due

    yield
    collect_if_due()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from tests.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture()
def engine_with_tiny(tiny_model):
    """An Engine whose resident model is the tiny one (as if loaded), with fresh caches."""
    from core.engine import Engine
    from core.models import ModelSpec

    eng = Engine()
    eng.models._model = tiny_model
    eng.models._key = ("tiny", "cpu", torch.float32, False)
    eng.models.get = lambda spec, progress=None: tiny_model
    return eng


@pytest.fixture
def errors(monkeypatch):
    """The error dialogs the editor would have shown, as (title, message), instead of showing them."""
    from widgets import dialogs

    shown = []
    monkeypatch.setattr(dialogs, "show_error", lambda parent, title, msg: shown.append((title, msg)))
    return shown


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster for the Ray tests' module, shut down after it (a session-wide one kept
    its actors, each holding the demo model and polling, alive through every later test file, and
    slowed them). num_cpus=4 on 2 cores:
    the actors take one logical CPU each and Ray Data's own tasks need some left, else they starve
    and the job hangs (seen with num_cpus=2)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(autouse=True)
def recovery_folder(tmp_path, monkeypatch):
    """Every test's editor autosaves into its own folder, never the user's data folder, and finds
    no other test's leftovers to offer."""
    folder = tmp_path / "recovery"
    monkeypatch.setenv("MALLEABLE_RECOVERY_DIR", str(folder))
    return folder
