"""The ``plugattn`` command (and ``python -m plugattn``): the CLI, or the extra to install when it is missing."""

import sys

from plugattn.extras import MissingExtraError


def main() -> None:
    try:
        from plugattn.cli import app
    except MissingExtraError as error:
        print(f"plugattn: {error}", file=sys.stderr)
        sys.exit(2)
    from plugattn.cli.parsing import bare_flags_with_values

    app(args=bare_flags_with_values(sys.argv[1:], {"--compile": "full"}), prog_name="plugattn")


if __name__ == "__main__":
    main()
