"""The documentation: complete docstrings on the public API, a README that is a front page whose links resolve, and
every command-line example of the README and the guides either run (quick ones here, minutes-long ones under
``make test-all``) or marked with the reason it cannot run on this machine. The Python examples run through
Sybil (the root ``conftest.py``)."""

from __future__ import annotations

import importlib
import inspect
import os
import pathlib
import re
import shlex
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.conftest import FASHION_MNIST, make_image_folder

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
PAGES = [page for page in PAGES if "_build" not in page.parts]

PUBLIC = {
    "plugattn": None,  # every name of its __all__
    "plugattn.blocks": ["IdentityStart", "with_init", "zero_start", "GateActivation", "find_gates",
                        "find_attention_blocks", "is_attention_block", "eca_kernel_size", "global_pool",
                        "create_fusion", "list_fusions", "MMTM", "SESum", "GatedSum", "ConcatFusion", "ConvBN"],
    "plugattn.recipe": ["ModelRecipe", "build_model", "build_multimodal"],
    "plugattn.models.multistream": ["MultiStreamNet", "EarlyFusion"],
    "plugattn.inspection": ["gate_spread"],
    "plugattn.training": ["train", "TrainConfig", "evaluate_checkpoint", "load_trained"],
    "plugattn.sweep": ["sweep"],
    "plugattn.visualisation": ["visualise"],
}
"""The public API whose docstrings must say, besides what and why, every argument, what comes back and what is
raised: what the API reference renders (types come from the hints)."""


def _public_objects() -> list[tuple[str, object]]:
    found = []
    for module_name, names in PUBLIC.items():
        module = importlib.import_module(module_name)
        for name in names or [name for name in module.__all__ if name != "__version__"]:
            found.append((f"{module_name}.{name}", getattr(module, name)))
    return found


def _documented_parameters(obj: object) -> set[str]:
    """``:param NAME:`` fields of ``obj``'s docstring (a class: its own and its bases')."""
    owners = [klass for klass in inspect.getmro(obj) if klass.__module__.startswith("plugattn")] \
        if inspect.isclass(obj) else [obj]
    text = "\n".join(inspect.getdoc(owner) or "" for owner in owners)
    return set(re.findall(r":param (\w+):", text))


def _raises(function: object) -> bool:
    """Whether ``function``'s own body raises (nested helpers' raises are theirs to document); generated functions
    (a dataclass's ``__init__``) have no source and raise nothing of their own."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except OSError:
        return False
    body = source.split('"""', 2)[-1] if '"""' in source else source
    return re.search(r"^\s+raise \w", body, flags=re.M) is not None


@pytest.mark.parametrize(("name", "obj"), _public_objects(), ids=[name for name, _ in _public_objects()])
def test_public_api_docstrings_say_arguments_returns_and_raises(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert len(doc.split()) >= 5, f"{name}: no docstring saying what and why"
    function = obj.__init__ if inspect.isclass(obj) else obj
    parameters = [p.name for p in inspect.signature(function).parameters.values() if p.name not in ("self", "cls")]
    missing = sorted(set(parameters) - _documented_parameters(obj))
    assert not missing, f"{name}: no ':param NAME:' for {missing}"
    if not inspect.isclass(obj):
        returned = inspect.signature(obj).return_annotation
        if returned not in (None, "None", inspect.Signature.empty):
            assert ":returns:" in doc, f"{name}: says nothing of what it returns ({returned})"
    own = obj.__dict__.get("__init__") if inspect.isclass(obj) else obj
    if own is not None and inspect.isfunction(own) and _raises(own):
        assert ":raises " in doc, f"{name}: raises, but its docstring says nothing of it"


# ---------------------------------------------------------------- the front page and its links

def _slug(heading: str) -> str:
    """GitHub's (and MyST's) anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: pathlib.Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {_slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def _links(page: pathlib.Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [link for link in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", link)]


def test_the_readme_is_a_front_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= 12 * 1024, f"README is {len(readme.encode())} bytes; the front page keeps 12 kB"
    for part in ("make demo", "make test", "```python", "make docs", "docs/_build/html", "![", "| attention |"):
        assert part in readme, part
    guides = {path.relative_to(REPO).as_posix() for path in (REPO / "docs" / "guides").glob("*.md")}
    linked = {link.split("#")[0] for link in _links(REPO / "README.md")}
    assert guides <= linked, f"guides the README does not link: {sorted(guides - linked)}"


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(REPO)) for page in PAGES])
def test_every_relative_link_resolves_in_the_repository(page):
    for link in _links(page):
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.relative_to(REPO)}: {link} points at nothing"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{page.relative_to(REPO)}: {link}: no such heading in {target or 'this page'}"


# ---------------------------------------------------------------- command-line examples

MARKER = re.compile(r"<!--\s*cli:\s*(run|slow|show)\s*(?:\"([^\"]*)\")?\s*-->\s*\n```bash\n(.*?)```", re.S)
BASH_BLOCK = re.compile(r"```bash\n")


def _cli_examples() -> list[tuple[str, str, str, str]]:
    """(page, how, reason, commands) of every bash block; a block without a marker is an error."""
    examples = []
    for page in PAGES:
        text = page.read_text()
        marked = list(MARKER.finditer(text))
        name = str(page.relative_to(REPO))
        assert len(marked) == len(BASH_BLOCK.findall(text)), \
            f"{name}: every ```bash block needs <!-- cli: run|slow|show \"reason\" --> just before it"
        examples += [(name, how, reason or "", commands) for how, reason, commands in (m.groups() for m in marked)]
    return examples


EXAMPLES = _cli_examples()


SHARED_DATA = REPO.parent / "shared" / "data"


def _stand_ins(folder: pathlib.Path, commands: str) -> None:
    """What the examples name as the user's own files, made small (a ResNet-18 weights file, an image folder, a
    Cadene SE-ResNet-50 file from an independent re-implementation of its network), and AV-MNIST's sources, which
    ``plugattn fetch`` would download, from the shared data."""
    if "resnet18.pth" in commands and not (folder / "resnet18.pth").exists():
        import torchvision

        torch.save(torchvision.models.resnet18(weights=None).state_dict(), folder / "resnet18.pth")
    if "data/images" in commands and not (folder / "data" / "images").exists():
        make_image_folder(folder / "data" / "images", classes=3, train=48, test=8, size=72)  # > one batch of 128
    if "se_resnet50-ce0d4300.pth" in commands:
        from tests import foreign_models

        network = foreign_models.randomise(foreign_models.CadeneSENet())
        torch.save(network.state_dict(), folder / "se_resnet50-ce0d4300.pth")
    if "--data-dir data" in commands:
        if not (SHARED_DATA / "mnist").is_dir() or not (SHARED_DATA / "fsdd").is_dir():
            pytest.skip(f"AV-MNIST's sources are not in {SHARED_DATA} (plugattn fetch avmnist --out DIR)")
        (folder / "data").mkdir(exist_ok=True)
        for name in ("mnist", "fsdd"):
            if not (folder / "data" / name).exists():
                (folder / "data" / name).symlink_to(SHARED_DATA / name, target_is_directory=True)


def _run(commands: str, folder: pathlib.Path, timeout: int) -> None:
    """Each command of a block (continuation lines joined), in ``folder``, with this environment's ``plugattn``."""
    environment = os.environ | {"PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                                "OMP_NUM_THREADS": "2", "COLUMNS": "200"}
    for command in commands.replace("\\\n", " ").splitlines():
        command = command.strip()
        if not command or command.startswith("#"):
            continue
        result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command], cwd=folder, env=environment,
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


def _example_params(how: str) -> list:
    marks = [pytest.mark.slow] if how == "slow" else []
    return [pytest.param(page, commands, id=f"{page}:{index}", marks=marks)
            for index, (page, kind, _, commands) in enumerate(EXAMPLES) if kind == how]


@pytest.mark.parametrize(("page", "commands"), _example_params("run"))
def test_quick_command_line_examples_run(page, commands, tmp_path):
    _stand_ins(tmp_path, commands)
    _run(commands, tmp_path, timeout=300)


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
@pytest.mark.parametrize(("page", "commands"), _example_params("slow"))
def test_minutes_long_command_line_examples_run(page, commands, tmp_path_factory):
    """A page's slow blocks share one folder, in page order: a later block reads what an earlier one wrote."""
    folder = tmp_path_factory.getbasetemp() / "cli-examples" / page.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    _stand_ins(folder, commands)
    _run(commands, folder, timeout=3600)


def test_examples_that_cannot_run_here_say_why():
    shown = [(page, reason, commands) for page, how, reason, commands in EXAMPLES if how == "show"]
    for page, reason, commands in shown:
        assert len(reason.split()) >= 3, f"{page}: a shown-only example needs its reason: {shlex.quote(commands[:60])}"
    assert len(shown) < len(EXAMPLES) / 2, "most command-line examples must run"


def test_the_reference_lists_every_name_plugattn_exports():
    import plugattn

    index = (REPO / "docs" / "reference" / "index.md").read_text()
    missing = [name for name in plugattn.__all__ if f"plugattn.{name}`" not in index]
    assert not missing, f"docs/reference/index.md does not list {missing}"
