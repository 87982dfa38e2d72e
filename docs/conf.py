"""Sphinx configuration: MyST Markdown pages, an API reference generated from the docstrings (autodoc, types from
the hints), the CLI generated from its typer app (sphinxcontrib-typer), the Furo theme. Builds offline: no
intersphinx inventories or theme assets are fetched, so references to torch, numpy and the other dependencies
are left as text (``nitpick_ignore_regex``) while every reference to plugattn itself must resolve."""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import plugattn  # noqa: E402

project = "plugattn"
author = "plugattn developers"
copyright = "2026, plugattn developers"
release = version = plugattn.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "sphinxcontrib.typer",
    "plugattn_docs",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4
suppress_warnings = ["myst.header"]

autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
autodoc_inherit_docstrings = False
autodoc_mock_imports: list[str] = []
python_use_unqualified_type_names = True

nitpicky = True
_FOREIGN = r"(torch|nn|numpy|np|typing|collections|pathlib|os|typer|click|rich|timm|torchvision|onnx|onnxruntime|" \
           r"matplotlib|safetensors|dataclasses|contextlib|argparse|enum|abc|Tensor|Module|Path|PathLike|" \
           r"Sequence|Mapping|Iterator|Callable|Iterable|Any|Optional|Union|Literal|T|Self)"
nitpick_ignore_regex = [
    (r"py:(class|obj|data|func|meth|attr|exc|mod)", _FOREIGN + r"(\..*)?"),
    (r"py:(class|obj)", r"(int|float|str|bool|bytes|dict|list|tuple|set|None|object|type|complex|slice)"),
    (r"py:(class|obj)", r"plugattn\..*\._[A-Za-z].*"),  # private base classes shown by show-inheritance
]

html_theme = "furo"
html_title = f"plugattn {release}"
html_static_path: list[str] = []
