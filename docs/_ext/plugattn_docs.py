"""What the documentation build needs beyond stock Sphinx: references to re-exported names (``plugattn.attach``, ``plugattn.blocks.INITS``) resolved to the page that
documents the object (``plugattn.insertion.attach``), so docstrings may name things as users import them."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.pycode import ModuleAnalyzer


def _locate(name: str) -> Any:
    """The object a dotted name refers to, or None."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attribute in parts[cut:]:
                found = getattr(found, attribute)
        except AttributeError:
            return None
        return found
    return None


def _documented(env: BuildEnvironment) -> dict[int, str]:
    """id(object) -> the name it is documented under, for every Python object the build documents."""
    cached = getattr(env, "_plugattn_documented", None)
    if cached is None:
        cached = {}
        for name in env.get_domain("py").objects:  # type: ignore[attr-defined]
            found = _locate(name)
            if found is not None and not isinstance(found, (int, float, str, bool, tuple, type(None))):
                cached.setdefault(id(found), name)
        env._plugattn_documented = cached  # type: ignore[attr-defined]
    return cached


def resolve_alias(app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.Element) -> Any:
    """A ``py`` reference to a plugattn name documented elsewhere: resolved to where it is documented."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("plugattn."):
        return None
    found = _locate(target)
    documented = _documented(env).get(id(found)) if found is not None else None
    if documented is None or documented == target:
        return None
    domain = env.get_domain("py")
    for role in ("class", "func", "meth", "data", "attr", "mod", "obj", "exc"):
        resolved = domain.resolve_xref(env, node["refdoc"], app.builder, role, documented, node, contnode)
        if resolved is not None:
            return resolved
    return None


def reexported_data_docs(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """A module constant re-exported by a package (``plugattn.blocks.INITS``) gets the docstring written under it
    where it is defined (autodoc reads attribute docstrings only from the documented module's own source, and
    otherwise shows the docstring of the value's type)."""
    if what != "data" or not name.startswith("plugattn."):
        return
    package_name, _, attribute = name.rpartition(".")
    package = importlib.import_module(package_name)
    for module_name in sorted(getattr(sys.modules.get(package_name), "__dict__", {})):
        module = getattr(package, module_name, None)
        if not isinstance(module, types.ModuleType) or not module.__name__.startswith(package_name + ".") \
                or getattr(module, attribute, None) is not obj:
            continue
        docs = ModuleAnalyzer.for_module(module.__name__).find_attr_docs().get(("", attribute))
        if docs:  # in place of what autodoc found: nothing, or the docstring of the value's type (dict, tuple)
            lines[:] = list(docs)
            return


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", resolve_alias)
    app.connect("autodoc-process-docstring", reexported_data_docs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
