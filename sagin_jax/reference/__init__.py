"""Independent plain-Python/networkx reference of docs/rules.md (test oracle and baseline), and the
independent checker of audit trails (``check_audit``; ``python -m sagin_jax.reference.check_audit
DIR``)."""

import importlib

from .simulate import bfs_path, capacities, grc_vector, simulate

__all__ = ["simulate", "capacities", "grc_vector", "bfs_path", "check_audit", "load_audit_dir"]


def __getattr__(name: str):
    # the checker is imported on first use, so that ``python -m sagin_jax.reference.check_audit``
    # runs the module once (runpy warns when the package has already imported it)
    if name in ("check_audit", "load_audit_dir"):
        _module = importlib.import_module(f"{__name__}.check_audit")
        globals().update(check_audit=_module.check_audit, load_audit_dir=_module.load_audit_dir)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
