"""Every Python example of the README and the documentation runs as written (Sybil: each page's blocks in order,
in one namespace per page); a block that cannot run here says why in a ``<!-- skip: next "reason" -->`` comment."""

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

pytest_collect_file = Sybil(parsers=[PythonCodeBlockParser(), SkipParser()], patterns=["*.md"],
                            excludes=["CHANGELOG.md"]).pytest()
