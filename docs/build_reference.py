"""Generate the API reference in ``docs/reference/``: one markdown page per ``hlsm`` module.

The pages hold, for every public name of a module (its ``__all__`` if it has one, else the
functions and classes it defines whose names do not start with ``_``), the call signature and the
numpydoc docstring verbatim; a class also lists its public methods and properties. ``hlsm.md`` is
the package's public surface: every name re-exported by ``hlsm/__init__.py``, linked to the page of
the module that defines it.

Usage: ``python docs/build_reference.py [--out docs/reference]``. Only ``hlsm`` is imported, never
the experiments (``hlsm.sims.*``: scripts run by ``hlsm reproduce``, documented in the README).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = "hlsm"
INSTALLED = Path(importlib.import_module(PACKAGE).__file__ or "").resolve().parents[1]
"""The folder that holds the package: a path under it is shown as ``<site-packages>/hlsm/...``."""
DEFAULT_OUT = Path(__file__).resolve().parent / "reference"


def module_names(package: str = PACKAGE) -> list[str]:
    """The package and every submodule, sorted; private modules (``_name``) are skipped."""
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        private = any(part.startswith("_") for part in info.name.split("."))
        if not private and not info.name.startswith(f"{package}.sims"):
            names.append(info.name)
    return sorted(names)


def _module_constants(module: ModuleType) -> dict[str, str]:
    """Public names assigned at the top level of the module's source, with the string literal that
    follows each assignment (its attribute docstring) or ``""``."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    body = tree.body
    for i, node in enumerate(body):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and not target.id.startswith("_"):
                nxt = body[i + 1] if i + 1 < len(body) else None
                doc = ""
                if (
                    isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)
                ):
                    doc = inspect.cleandoc(nxt.value.value)
                out[target.id] = doc
    return out


def public_names(module: ModuleType) -> list[str]:
    """``__all__`` if the module defines it, else the public functions and classes it defines and the
    public names it assigns at top level, in source order."""
    explicit = getattr(module, "__all__", None)
    if explicit is not None:
        return list(explicit)
    constants = _module_constants(module)
    out = []
    for name, obj in vars(module).items():
        if name.startswith("_") or name == "annotations":
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            if getattr(obj, "__module__", None) == module.__name__:
                out.append(name)
        elif name in constants and not inspect.ismodule(obj):
            out.append(name)
    return out


def _signature(obj: Any) -> str:
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return ""
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def _docstring(obj: Any) -> str:
    doc = inspect.getdoc(obj)
    return doc if doc else "(no docstring)"


def _fenced(text: str) -> list[str]:
    fence = "````" if "```" in text else "```"
    return [f"{fence}text", text, fence, ""]


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", name.lower().replace(" ", "-"))


def _class_members(cls: type) -> list[str]:
    lines: list[str] = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property | staticmethod | classmethod) or inspect.isfunction(member):
            target = member.fget if isinstance(member, property) else getattr(cls, name)
            if isinstance(member, property):
                lines.append(f"#### `{cls.__name__}.{name}` (property)")
            else:
                lines.append(f"#### `{cls.__name__}.{name}{_signature(target)}`")
            lines.append("")
            doc = inspect.getdoc(target)
            if doc:
                lines += _fenced(doc)
    return lines


def _entry(qualname: str, obj: Any, doc: str = "") -> list[str]:
    if inspect.isclass(obj):
        lines = [f"### class `{qualname}{_signature(obj)}`", ""]
        lines += _fenced(_docstring(obj))
        lines += _class_members(obj)
    elif callable(obj):
        lines = [f"### `{qualname}{_signature(obj)}`", ""]
        lines += _fenced(_docstring(obj))
    else:
        value = re.sub(r" at 0x[0-9a-f]+", "", repr(obj))  # no memory addresses: the page is the same every build
        value = value.replace(f"'{INSTALLED}/", "'<site-packages>/")  # nor this machine's paths
        value = value if len(value) <= 300 else value[:297] + "..."
        lines = [f"### `{qualname}`", "", f"`{type(obj).__name__}`, value:", ""]
        lines += _fenced(value)
        if doc:
            lines += _fenced(doc)
    return lines


def page_name(module_name: str) -> str:
    return f"{module_name}.md"


def module_page(module: ModuleType) -> str:
    """The markdown page of one module (non-package modules list the names they define)."""
    name = module.__name__
    lines = [f"# `{name}`", "", "[reference index](index.md)", ""]
    lines += _fenced(_docstring(module))
    names = public_names(module)
    constants = _module_constants(module)
    if not names:
        return "\n".join(lines + ["No public functions or classes.", ""])
    lines += ["## Contents", ""]
    lines += [f"- [`{n}`](#{_anchor(n)})" for n in names]
    lines += ["", "## API", ""]
    for n in names:
        obj = getattr(module, n)
        defined = getattr(obj, "__module__", None)
        lines.append(f'<a id="{_anchor(n)}"></a>')
        lines.append("")
        if defined and defined != name and defined.startswith(PACKAGE) and (inspect.isclass(obj) or callable(obj)):
            doc = inspect.getdoc(obj)
            summary = doc.strip().splitlines()[0] if doc else ""
            lines += [
                f"### `{name}.{n}`",
                "",
                f"Re-exported from [`{defined}`]({page_name(defined)}#{_anchor(n)}): {summary}",
                "",
            ]
            continue
        lines += _entry(f"{name}.{n}", obj, constants.get(n, ""))
    return "\n".join(lines)


def package_page(package: ModuleType, modules: list[str]) -> str:
    """``hlsm.md``: the public surface of ``hlsm/__init__.py``, one line per name."""
    lines = [f"# `{package.__name__}`: the public API", "", "[reference index](index.md)", ""]
    lines += _fenced(_docstring(package))
    lines += ["| name | kind | defined in | summary |", "|---|---|---|---|"]
    for n in sorted(public_names(package), key=str.lower):
        obj = getattr(package, n)
        if inspect.ismodule(obj):  # a module callable as its verb (hlsm.identify, hlsm.simulate)
            verb = getattr(obj, n)
            summary = (inspect.getdoc(verb) or "").strip().splitlines()[0].replace("|", "\\|")
            link = f"[`{obj.__name__}.{n}`]({page_name(obj.__name__)}#{_anchor(n)})"
            lines.append(f"| `{n}` | module, callable as its function | {link} | {summary} |")
            continue
        kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else type(obj).__name__
        defined = getattr(obj, "__module__", None) if (inspect.isclass(obj) or callable(obj)) else None
        if defined is None or defined not in modules:
            defined = _owner(n, modules) or package.__name__
        if inspect.isclass(obj) or callable(obj):
            doc = inspect.getdoc(obj)
        else:
            doc = _module_constants(importlib.import_module(defined)).get(n)
        summary = (doc or "").strip().splitlines()[0] if doc else ""
        summary = summary.replace("|", "\\|")
        link = f"[`{defined}`]({page_name(defined)}#{_anchor(n)})"
        lines.append(f"| `{n}` | {kind} | {link} | {summary} |")
    return "\n".join(lines + [""])


def _owner(name: str, modules: list[str]) -> str | None:
    """The module whose source assigns ``name`` at top level (for constants, which carry no ``__module__``)."""
    for mod_name in modules:
        if mod_name != PACKAGE and name in _module_constants(importlib.import_module(mod_name)):
            return mod_name
    return None


def build(out: str | Path = DEFAULT_OUT) -> list[Path]:
    """Write ``index.md``, ``hlsm.md`` and one page per submodule under ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    modules = module_names()
    written = []
    index = [
        "# API reference",
        "",
        "Generated by `python docs/build_reference.py` from the docstrings; do not edit by hand.",
        "",
        f"- [`{PACKAGE}`]({page_name(PACKAGE)}): the public API re-exported by `hlsm/__init__.py`",
    ]
    for name in modules:
        module = importlib.import_module(name)
        if name == PACKAGE:
            text = package_page(module, modules)
        else:
            text = module_page(module)
            doc = inspect.getdoc(module)
            summary = doc.strip().splitlines()[0] if doc else ""
            index.append(f"- [`{name}`]({page_name(name)}): {summary}")
        path = out / page_name(name)
        path.write_text(text)
        written.append(path)
    index_path = out / "index.md"
    index_path.write_text("\n".join(index + [""]))
    return [index_path, *written]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    paths = build(args.out)
    print(f"wrote {len(paths)} pages to {args.out}")


if __name__ == "__main__":
    main()
