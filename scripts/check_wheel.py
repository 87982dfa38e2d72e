"""Run by ``make wheel-check`` inside the clean virtual environment the built wheel was installed into: the package
is the installed one (not the source tree), ships ``py.typed`` and its version, and ``import plugattn``,
``plugattn --help`` and the README's Python example work."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import tempfile

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def main() -> None:
    os.chdir(tempfile.mkdtemp())  # nothing of the source tree on the import path
    import importlib.metadata

    import plugattn

    installed = pathlib.Path(plugattn.__file__).parent
    if "site-packages" not in installed.parts:
        raise SystemExit(f"plugattn was imported from {installed}, not from the installed wheel")
    if not (installed / "py.typed").is_file():
        raise SystemExit("the wheel does not ship py.typed")
    if importlib.metadata.version("plugattn") != plugattn.__version__:
        raise SystemExit(f"metadata version {importlib.metadata.version('plugattn')} != {plugattn.__version__}")
    command = pathlib.Path(sys.executable).parent / "plugattn"
    result = subprocess.run([str(command), "--help"], capture_output=True, text=True)
    if result.returncode != 0 or "train" not in result.stdout:
        raise SystemExit(f"plugattn --help failed:\n{result.stdout}\n{result.stderr}")
    example = re.search(r"```python\n(.*?)```", README.read_text(), flags=re.S).group(1)
    exec(compile(example, str(README), "exec"), {})
    print(f"plugattn {plugattn.__version__} from {installed}: import, py.typed, `plugattn --help` and the README "
          "example work")


if __name__ == "__main__":
    main()
