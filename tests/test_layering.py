"""The package's layers, read from its import statements (every ``import`` in every module, at the
top or inside a function): a module imports only from its own layer or the layers below it, so
no import runs back up. The networkx reference imports nothing of the package (it is the
independent oracle)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sagin_jax"

LAYERS = [
    # the floor: type checks, files, configs, compilation and device helpers, the oracle
    ("sagin_jax", "sagin_jax.checks", "sagin_jax.files", "sagin_jax.config",
     "sagin_jax.compilation", "sagin_jax.host_memory", "sagin_jax.devices", "sagin_jax.reference"),
    ("sagin_jax.scenario",),
    ("sagin_jax.features",),
    ("sagin_jax.policies",),
    ("sagin_jax.embedding",),
    ("sagin_jax.simulation", "sagin_jax.kernels", "sagin_jax.audit_trail"),
    ("sagin_jax.training", "sagin_jax.env"),
    ("sagin_jax.validate",),
    ("sagin_jax.experiments",),
    ("sagin_jax.cli",),
]


def layer_of(module: str) -> int:
    """The layer of ``module``: that of the longest prefix listed in ``LAYERS``."""
    best, level = "", None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best, level = p, i
    if level is None:
        raise KeyError(f"{module} has no layer: add it to LAYERS")
    return level


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, module) of every package module that ``path`` imports, relative imports resolved;
    ``from package import name`` counts ``package.name`` when that is a module."""
    here = module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                file = root.parent / sub.replace(".", "/")
                is_module = file.with_suffix(".py").exists() or file.is_dir()
                out.append((node.lineno, sub if is_module else base))
    return [(line, m) for line, m in out if m == "sagin_jax" or m.startswith("sagin_jax.")]


def upward_imports(root: Path = PACKAGE) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        mod = module_name(path, root)
        for line, target in imported_modules(path, root):
            if layer_of(target) > layer_of(mod):
                bad.append(f"{path.relative_to(root.parent)}:{line}: {mod} (layer "
                           f"{layer_of(mod)}) imports {target} (layer {layer_of(target)})")
    return bad


def test_no_import_runs_back_up_the_layers():
    assert upward_imports() == []


def test_the_reference_imports_nothing_of_the_package():
    for path in sorted((PACKAGE / "reference").rglob("*.py")):
        outside = [m for _, m in imported_modules(path) if not m.startswith("sagin_jax.reference")]
        assert outside == [], f"{path.name} imports {outside}"


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))


@pytest.mark.parametrize("source,offender", [
    # a function-level import counts as much as a top-level one
    ("def f():\n    from sagin_jax.simulation.online import simulate\n",
     "sagin_jax.simulation.online"),
    ("from sagin_jax import validate\n", "sagin_jax.validate"),
    ("from ..training import config\n", "sagin_jax.training.config"),
])
def test_an_upward_import_is_found(tmp_path, source, offender):
    """A scenario module importing from a higher layer is reported (the check can fail)."""
    root = tmp_path / "sagin_jax"
    for p in PACKAGE.rglob("*.py"):  # the real tree, so module lookups resolve
        dst = root / p.relative_to(PACKAGE)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(p.read_text())
    (root / "scenario" / "upward.py").write_text(source)
    bad = upward_imports(root)
    assert len(bad) == 1 and offender in bad[0] and "scenario/upward.py" in bad[0]
