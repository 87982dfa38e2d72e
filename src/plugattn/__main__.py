"""``python -m plugattn`` runs the command line."""

from plugattn.cli import app

app(prog_name="plugattn")
