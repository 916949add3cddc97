"""Independent plain-Python + networkx reference of docs/rules.md (test oracle and baseline)."""

from .check_audit import check_audit, load_audit_dir
from .simulate import bfs_path, capacities, grc_vector, simulate

__all__ = ["simulate", "capacities", "grc_vector", "bfs_path", "check_audit", "load_audit_dir"]
