"""Malleable's editing engine. Never imports Qt: it runs in the GUI's worker thread, the CLI and
any batch or remote runner alike."""
from .context import EditContext, MethodOutput
from .engine import Engine, default_engine, run
from .errors import Cancelled, InvalidInput, MalleableError, ModelUnavailable, OutOfMemory
from .events import CancelToken, Progress
from .models import ModelSpec
from .registry import all_methods, get_method
from .request import EditRequest, EditResult

__all__ = ["EditContext", "EditRequest", "EditResult", "Engine", "MethodOutput", "default_engine", "run",
           "Cancelled", "InvalidInput", "MalleableError", "ModelUnavailable", "OutOfMemory", "CancelToken",
           "Progress", "ModelSpec", "all_methods", "get_method"]
