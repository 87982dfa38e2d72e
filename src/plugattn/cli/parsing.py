"""Command-line text to values: comma lists of ints, ``key=value`` block options, sweep grids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SEED_KEYS = ("seed", "seeds")


def bare_flags_with_values(argv: Sequence[str], flags: dict[str, str]) -> list[str]:
    """``argv`` with each bare option of ``flags`` (one followed by another option, or last) given its value:
    ``--compile`` alone was a flag before it took a mode, and keeps meaning ``full``."""
    result: list[str] = []
    for index, token in enumerate(argv):
        result.append(token)
        following = argv[index + 1] if index + 1 < len(argv) else None
        if token in flags and (following is None or following.startswith("-")):
            result.append(flags[token])
    return result


def parse_int_list(text: str | None, name: str) -> list[int] | None:
    """``"3,4"`` -> [3, 4]; None or "" -> None; ``name`` is the option reported on malformed text."""
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated ints such as 3,4; got {text!r}") from None


def parse_where(text: str) -> str | list[str]:
    """``--where``: ``"layer3.0.bn2, layer4.0.bn2"`` -> a list of names; anything else (``residual``, a glob,
    ``re:…``) as it is."""
    return [name.strip() for name in text.split(",")] if "," in text else text

def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``["kernel_size=3", "pool_types=avg+max"]`` -> block options (``+`` joins list values)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"block option must look like key=value, got {pair!r}")
        options[key] = parse_value(value)
    return options


def parse_value(text: str) -> Any:
    """Interpret a command-line value: int, float, bool, none, ``a+b`` lists, else the string."""
    if "+" in text:
        return [parse_value(part) for part in text.split("+")]
    lowered = text.lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_grid(tokens: Sequence[str]) -> dict[str, list[Any]]:
    """``["attention=none,se,cbam", "reduction=8,16", "seeds=0,1"]`` -> {key: [values]} (``seeds`` -> ``seed``;
    ``+`` joins a list value, e.g. ``pool_types=avg+max,avg``)."""
    grid: dict[str, list[Any]] = {}
    for token in tokens:
        key, sep, values = token.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"grid entry must look like key=value1,value2; got {token!r}")
        key = "seed" if key in SEED_KEYS else key
        if key in grid:
            raise ValueError(f"grid key {key!r} is given twice")
        grid[key] = [parse_value(value) for value in values.split(",")]
    return grid
