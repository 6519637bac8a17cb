"""Every editing method is one folder (a package) here; importing this package registers them all.

A package registers its method when imported (`register(Method(...))` in its `method` module, which
its `__init__` imports). New folders are found by `discover()`, so adding a method means adding a
folder and nothing else. Methods from other distributions register through the
`malleable.methods` entry-point group (each entry point names a module to import)."""
from __future__ import annotations

import importlib
import logging
import pkgutil

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "malleable.methods"


def discover() -> list[str]:
    """Import every method package in this folder (and on this package's __path__), then every
    entry point of the group. Returns the module names imported."""
    names = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.ispkg:
            importlib.import_module(f"{__name__}.{info.name}")
            names.append(info.name)
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            importlib.import_module(ep.value.split(":")[0])
            names.append(ep.value)
        except Exception:  # a broken plug-in must not take the built-in methods down
            log.exception("method plug-in %s failed to load", ep.value)
    return names
