"""Import hygiene: ``import plugattn`` loads the library only and changes no global state; the library never
imports the application; a command whose extra is missing names it."""

import ast
import pathlib
import subprocess
import sys

import pytest

import plugattn
from plugattn.extras import MissingExtraError

SOURCE = pathlib.Path(plugattn.__file__).parent
APPLICATION = {"training", "data", "sweep", "visualisation", "cli", "demo", "__main__"}
APPLICATION_PACKAGES = ["matplotlib", "tensorboard", "onnx", "onnxruntime", "onnxscript", "pytorch_grad_cam", "typer",
                        "rich", "timm"]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_import_loads_the_library_only():
    code = (
        "import sys; import plugattn\n"
        f"loaded = [m for m in {APPLICATION_PACKAGES!r} + ['plugattn.' + a for a in {sorted(APPLICATION)!r}] "
        "if m in sys.modules]\n"
        "print(loaded)"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_matplotlib_backend_is_never_changed():
    code = (
        "import matplotlib; matplotlib.use('svg')\n"
        "import torch, plugattn, plugattn.visualisation as v, plugattn.training, plugattn.sweep\n"
        "import tempfile, pathlib\n"
        "v.plot_bars(['a', 'b'], [0.5, 0.6], [0.1, 0.1], pathlib.Path(tempfile.mkdtemp()) / 'bars.png')\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in __import__('sys').modules)"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["svg", "False"]


def _imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _application_part(module: str) -> str | None:
    """The application module or package that ``plugattn.X[.Y]`` belongs to, else None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "plugattn" and parts[1] in APPLICATION else None


def test_the_library_never_imports_the_application():
    library = [p for p in SOURCE.rglob("*.py") if p.relative_to(SOURCE).parts[0].removesuffix(".py") not in APPLICATION]
    assert len(library) > 15
    assert not any("training" in p.parts or "cli" in p.parts for p in library)
    for path in library:
        bad = sorted(m for m in _imported_modules(path) if _application_part(m))
        assert not bad, f"{path.relative_to(SOURCE)} imports {bad}"


def test_cli_without_its_extra_names_it():
    code = "import sys; sys.modules['typer'] = None\nfrom plugattn.__main__ import main\nmain()"
    result = _python(code)
    assert result.returncode == 2
    assert "plugattn[cli]" in result.stderr and "typer" in result.stderr


def test_export_without_its_extra_names_it(monkeypatch, tmp_path):
    from plugattn.export import export_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingExtraError, match=r"plugattn\[export\]"):
        export_onnx(plugattn.create_model("resnet20"), tmp_path / "m.onnx", (3, 32, 32))
    assert not (tmp_path / "m.onnx").exists()


def _module_name(path: pathlib.Path) -> str:
    parts = ("plugattn", *path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _plugattn_imports(path: pathlib.Path) -> set[str]:
    """plugattn modules ``path`` imports, at module level or inside functions, with the packages whose
    ``__init__`` each import runs (the top package excepted: it imports everything)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        for name in names:
            parts = name.split(".")
            found |= {".".join(parts[:end]) for end in range(2, len(parts) + 1) if parts[0] == "plugattn"}
    return found


def test_no_import_circles():
    """No two modules import each other, directly or through others, even inside a function (the zoo and
    insertion once did); a package's own submodules importing it back (its __init__ runs first) is no circle."""
    modules = {_module_name(path): path for path in SOURCE.rglob("*.py")}
    graph = {name: {m for m in _plugattn_imports(path) if m in modules and m != name and not name.startswith(f"{m}.")}
             for name, path in modules.items()}
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            name, trail = stack.pop()
            for following in graph[name]:
                assert following != start, f"import circle: {' -> '.join(trail + [following])}"
                if following not in seen:
                    seen.add(following)
                    stack.append((following, trail + [following]))
