"""Every Python example of the README and the documentation runs as written (Sybil: each page's blocks in order,
in one namespace per page); a block that cannot run here says why in a ``<!-- skip: next "reason" -->`` comment.
Under pytest-xdist (``make test`` runs one worker per core) each worker computes on one thread, so that the workers
share the cores instead of oversubscribing them."""

import os

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

pytest_collect_file = Sybil(parsers=[PythonCodeBlockParser(), SkipParser()], patterns=["*.md"],
                            excludes=["CHANGELOG.md"]).pytest()


def pytest_configure(config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"  # the command-line tests' subprocesses too
        torch.set_num_threads(1)
