"""The layer contract (DESIGN section 4), read from the source: imports point down only.

``core`` (``hlsm/*.py``, ``hlsm/examples``) <- ``identify``, ``infer``, ``lm`` <- ``app`` <- ``sims``
(the experiments, run as processes by ``hlsm reproduce``; nothing imports them). ``infer`` and
``lm`` may use ``identify`` (the checker's verdicts); ``identify`` and ``lm`` never use ``infer``
(no Pyro on the transformer side); nothing but the entry point ``hlsm/__main__.py`` and the
experiments imports ``app``. Imports inside functions count; imports under ``if TYPE_CHECKING:`` do
not (they never run). Third-party packages are held to their layers too (:data:`THIRD_PARTY`):
Pyro and ArviZ in ``infer`` and above, networkx out of the core.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hlsm"
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
MAPPED = {name: ROOT / folder for name, folder in SETUPTOOLS["package-dir"].items()}
"""Packages whose source lives outside ``hlsm/`` (``hlsm.sims`` is the top-level ``sims/``)."""
LAYERS = ("identify", "infer", "lm", "app", "sims")
ALLOWED = {
    "core": {"core"},
    "identify": {"core", "identify"},
    "infer": {"core", "identify", "infer"},
    "lm": {"core", "identify", "lm"},
    "app": {"core", "identify", "infer", "lm", "app"},
    "sims": {"core", "identify", "infer", "lm", "app", "sims"},
    "entry": {"core", "app"},
}
THIRD_PARTY = {
    "pyro": {"infer", "app", "sims"},
    "arviz": {"infer", "app", "sims"},
    "networkx": {"identify", "infer", "lm", "app", "sims"},
}


def layer_of_module(name: str) -> str:
    """The layer of a dotted module name inside ``hlsm``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def sources(package: Path = PACKAGE) -> list[tuple[Path, Path]]:
    """``(file, path inside the package)`` of every module: ``hlsm/`` and, for the real package, the
    folders setuptools maps into it (``sims/x.py`` -> ``sims/x.py`` inside ``hlsm``)."""
    found = [(path, path.relative_to(package)) for path in package.rglob("*.py")]
    if package == PACKAGE:
        for name, folder in MAPPED.items():
            inside = Path(*name.split(".")[1:])
            found += [(path, inside / path.relative_to(folder)) for path in folder.rglob("*.py")]
    return sorted(found)


def layer_of_file(rel: Path) -> str:
    """The layer of a module given its path inside the package."""
    if rel.parts == ("__main__.py",):
        return "entry"
    return rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] in LAYERS else "core"


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id.endswith("TYPE_CHECKING")


def _lazy_names(package: Path = PACKAGE) -> dict[str, str]:
    """``hlsm/__init__.py``'s lazy public names and the modules that define them (read, not imported)."""
    tree = ast.parse((package / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_MODULES" for t in node.targets):
            modules = ast.literal_eval(node.value)
            return {name: module for module, names in modules.items() for name in names}
    return {}


def _package_of(rel: Path) -> list[str]:
    """The dotted package of a module given its path inside ``hlsm`` (``lm/sft.py`` -> ``["hlsm", "lm"]``)."""
    return ["hlsm", *rel.parts[:-1]]  # lm/sft.py -> hlsm.lm; lm/__init__.py -> hlsm.lm as well


def runtime_imports(tree: ast.AST, rel: Path | None = None, package: Path = PACKAGE) -> Iterator[tuple[int, str]]:
    """``(line, module)`` of every import that can run: nested ones too, not those under TYPE_CHECKING.

    Relative imports are resolved against the package of ``rel`` (the path inside ``hlsm``);
    ``from hlsm import NAME`` resolves a lazy public name to the module that defines it;
    ``importlib.import_module("hlsm...")`` with a literal name counts as an import.
    """
    lazy = _lazy_names(package)
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                assert isinstance(child, ast.If)
                stack.extend(child.orelse)
                continue
            if isinstance(child, ast.Import):
                yield from ((child.lineno, alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level and rel is not None:
                    here = _package_of(rel)
                    parent = here[: len(here) - child.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                if base == "hlsm":  # from hlsm import fitstate / fit -> the module behind the name
                    yield from ((child.lineno, lazy.get(alias.name, f"hlsm.{alias.name}")) for alias in child.names)
                elif base:
                    yield child.lineno, base
            elif (
                isinstance(child, ast.Call)
                and isinstance(child.func, (ast.Attribute, ast.Name))
                and (child.func.attr if isinstance(child.func, ast.Attribute) else child.func.id) == "import_module"
                and child.args
                and isinstance(child.args[0], ast.Constant)
                and isinstance(child.args[0].value, str)
            ):
                yield child.lineno, child.args[0].value
            stack.append(child)


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import under ``package`` that breaks the contract, as ``file:line message``."""
    found = []
    for path, rel in sources(package):
        layer = layer_of_file(rel)
        for line, module in runtime_imports(ast.parse(path.read_text(), str(path)), rel, package):
            where = f"{path.relative_to(package.parent)}:{line}"
            top = module.split(".")[0]
            if top == "hlsm" and module != "hlsm":
                target = layer_of_module(module)
                if target not in ALLOWED[layer]:
                    found.append(
                        f"{where} imports {module}: the {layer} layer may import only "
                        f"{', '.join(sorted(ALLOWED[layer]))} (docs/index.md, the layers); move the code down "
                        "or the import up"
                    )
            elif top in THIRD_PARTY and layer not in THIRD_PARTY[top]:
                found.append(f"{where} imports {top}, which belongs to the {'/'.join(sorted(THIRD_PARTY[top]))} layers")
    return found


def test_imports_point_down_only() -> None:
    found = violations()
    assert not found, "layer contract broken:\n" + "\n".join(found)


def test_the_contract_flags_a_wrong_import(tmp_path: Path) -> None:
    """The check itself: a planted import of infer from lm, and of app from the core, are named."""
    fake = tmp_path / "hlsm"
    (fake / "lm").mkdir(parents=True)
    (fake / "lm" / "bad.py").write_text("def f():\n    from hlsm.infer.model import hlsm\n")
    (fake / "spec.py").write_text(
        "import hlsm.app.cli\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pyro\n"
    )
    (fake / "identify").mkdir()
    (fake / "identify" / "ok.py").write_text("from hlsm.spec import Spec\nimport networkx\n")
    (fake / "__init__.py").write_text('_MODULES = {"hlsm.infer.fitting": ("fit",)}\n')
    (fake / "lm" / "sneaky.py").write_text(
        "import importlib\nfrom hlsm import fit\nfrom ..infer import model\n"
        "def f():\n    return importlib.import_module('hlsm.infer.nuts')\n"
    )
    found = violations(fake)
    assert len(found) == 5, found
    assert found[0].startswith("hlsm/lm/bad.py:2 imports hlsm.infer.model: the lm layer may import only")
    assert [f.split(" imports ")[0] for f in found[1:4]] == [
        "hlsm/lm/sneaky.py:2",
        "hlsm/lm/sneaky.py:3",
        "hlsm/lm/sneaky.py:5",
    ]
    assert [f.split(" imports ")[1].split(":")[0] for f in found[1:4]] == [
        "hlsm.infer.fitting",  # the module behind the lazy name
        "hlsm.infer",  # the relative import, resolved
        "hlsm.infer.nuts",
    ]
    assert found[4].startswith("hlsm/spec.py:1 imports hlsm.app.cli: the core layer may import only core")


def test_sims_are_never_imported_by_the_library() -> None:
    """The experiments are the top: no other module imports them (``hlsm reproduce`` runs them as processes)."""
    for path, rel in sources():
        if layer_of_file(rel) == "sims":
            continue
        for line, module in runtime_imports(ast.parse(path.read_text()), rel):
            assert not module.startswith("hlsm.sims"), f"{path.relative_to(ROOT)}:{line} imports {module}"


@pytest.mark.parametrize("package", ["hlsm", "hlsm.identify", "hlsm.infer"])
def test_lazy_names_resolve_and_match_their_type_stubs(package: str) -> None:
    """Every lazy public name loads from the module it names, and the TYPE_CHECKING imports say the same."""
    module = importlib.import_module(package)
    path = Path(module.__file__ or "")
    tree = ast.parse(path.read_text())
    stubbed = {
        alias.asname or alias.name: node.module
        for block in ast.walk(tree)
        if _type_checking_block(block)
        for node in ast.walk(block)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    names = module._NAMES  # type: ignore[attr-defined]
    assert stubbed == names
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_submodules_are_not_shadowed_and_verbs_are_callable() -> None:
    code = (
        "import sys, types, hlsm, hlsm.identify, hlsm.simulate\n"
        "assert isinstance(hlsm.identify, types.ModuleType) and isinstance(hlsm.simulate, types.ModuleType)\n"
        "assert hlsm.identify is sys.modules['hlsm.identify'] and hlsm.simulate is sys.modules['hlsm.simulate']\n"
        "assert callable(hlsm.identify) and callable(hlsm.simulate) and callable(hlsm.fit)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_import_hlsm_and_help_load_no_torch() -> None:
    code = (
        "import sys, hlsm\n"
        "assert 'torch' not in sys.modules, 'import hlsm loaded torch'\n"
        "from hlsm.app.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'hlsm --help loaded torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)


def test_the_packages_setuptools_ships_are_the_folders() -> None:
    """pyproject.toml lists the packages by hand (a mapped folder rules out package discovery): the
    list is every folder of ``hlsm/`` with an ``__init__.py``, plus the mapped ones, each of which exists."""
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert set(SETUPTOOLS["packages"]) == folders | set(MAPPED)
    assert all((folder / "__init__.py").exists() for folder in MAPPED.values())
    assert not (PACKAGE / "sims").exists(), "the experiments live in the top-level sims/ only"
