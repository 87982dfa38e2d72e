"""The ``plugattn`` command line, one module per command group: :mod:`.inspect` (blocks, profile),
:mod:`.training` (train, sweep), :mod:`.evaluation` (eval, viz), :mod:`.models` (export, convert), :mod:`.data`
(fetch), :mod:`.demo`; :mod:`.common` holds the app and what the commands share."""

# importing a command group registers its commands, in the order `plugattn --help` lists them
from plugattn.cli import inspect, training, evaluation, models, data, demo  # noqa: F401, I001
from plugattn.cli.common import app, console, parse_shape

__all__ = ["app", "console", "parse_shape"]
