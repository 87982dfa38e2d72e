"""Run timm's own model test-suite (``tests/test_models.py`` of a pytorch-image-models checkout) on the
``plugattn_*`` models that ``import plugattn.timm`` registers.

    .venv/bin/python scripts/run_timm_model_tests.py PATH/TO/pytorch-image-models/tests/test_models.py \\
        [--models resnet18,resnet20,cbam_resnet50] [pytest options]

The file is not part of plugattn (it is timm's); the in-suite equivalent that CI runs offline is
``tests/test_timm_adapter.py``. Only the chosen plugattn models are kept; every other model timm lists is
deselected before the run.
"""

from __future__ import annotations

import argparse
import sys

import pytest

import plugattn.timm  # noqa: F401  (registers the models before timm's file lists them)


class KeepModels:
    """A pytest plugin that deselects every test whose ``model_name`` is not one of ``names``."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        keep, drop = [], []
        for item in items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            (keep if params.get("model_name") in self.names else drop).append(item)
        items[:] = keep
        config.hook.pytest_deselected(items=drop)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("test_file", help="timm's tests/test_models.py")
    parser.add_argument("--models", default="resnet18,resnet20,cbam_resnet50,wide_resnet18_x1_5,wrn16_8",
                        help="zoo names (without the plugattn_ prefix), comma-separated")
    args, pytest_args = parser.parse_known_args()
    names = {f"{plugattn.timm.PREFIX}{name}" for name in args.models.split(",")}
    unknown = sorted(names - set(plugattn.timm.REGISTERED))
    if unknown:
        parser.error(f"--models names unknown models {unknown}")
    return pytest.main([args.test_file, "-q", "-p", "no:cacheprovider", *pytest_args], plugins=[KeepModels(names)])


if __name__ == "__main__":
    sys.exit(main())
