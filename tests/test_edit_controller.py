"""The controller over the job runner: edits run off the GUI thread; it queues, supersedes, cancels."""
import threading

import numpy as np
import pytest

from core import EditRequest
from editor_app.edit_controller import EditController


def _img(seed=0):
    return (np.random.RandomState(seed).rand(32, 48, 3) * 255).astype(np.uint8)


@pytest.fixture()
def controller(qtbot, engine_with_tiny):
    c = EditController(engine_with_tiny)
    yield c
    c.shutdown()


def test_edit_runs_on_the_worker_thread_and_streams_previews(qtbot, controller):
    threads, previews = set(), []
    main = threading.get_ident()
    controller.runner.subscribe(lambda ev: threads.add(threading.get_ident()) if type(ev).__name__ == "ProgressEvent"
                                else None)  # runner listeners run where the engine runs
    controller.progress.connect(lambda job, ev: previews.append(ev.preview) if ev.preview is not None else None)
    with qtbot.waitSignal(controller.result_ready, timeout=60000) as blocker:
        controller.submit(EditRequest("reconstruct", _img(), {"steps": 4}))
    job, result = blocker.args
    assert result.image.size == (48, 32)
    assert previews and main not in threads  # model passes ran elsewhere
    assert not controller.busy


def test_queue_supersedes_same_method_and_cancel_stops(qtbot, controller):
    done, failed = [], []
    controller.result_ready.connect(lambda job, r: done.append(job.id))
    controller.failed.connect(lambda job, kind, msg: failed.append((job.id, kind)))
    first = controller.submit(EditRequest("reconstruct", _img(1), {"steps": 30}))
    queued = controller.submit(EditRequest("reconstruct", _img(2), {"steps": 3}))
    newer = controller.submit(EditRequest("reconstruct", _img(3), {"steps": 3}))
    assert controller.queue == [newer]  # the older queued request was superseded
    assert controller.running is first
    controller.cancel()
    assert controller.queue == []
    qtbot.waitUntil(lambda: not controller.busy, timeout=60000)
    assert failed == [(first.id, "cancelled")] and done == []
    assert queued.id not in done


def test_engine_errors_come_back_as_signals(qtbot, controller):
    # A handle off the 48x32 picture is only found once the engine knows the picture's size.
    with qtbot.waitSignal(controller.failed, timeout=30000) as blocker:
        controller.submit(EditRequest("drag", _img(), {"points": [(500, 5, 10, 10)], "lora_steps": 0}))
    job, kind, message = blocker.args
    assert kind == "invalid input" and "outside" in message
    assert not controller.busy


def test_a_bad_request_is_refused_before_it_is_queued():
    from core import InvalidInput

    with pytest.raises(InvalidInput, match="mask"):
        EditRequest("reconstruct", _img(), {"steps": 3}, mask=np.zeros((5, 5), np.float32))
