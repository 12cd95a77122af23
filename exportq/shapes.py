"""Shapes as people type them on a command line: `1x3x224x224` or `1x16:int64`."""

from __future__ import annotations

from exportq.errors import SpecInvalid


def parse_shape(text: str) -> tuple[list[int], str | None]:
    """Parse `SHAPE[:DTYPE]` into (dims, dtype or None)."""
    shape_part, _, dtype = text.partition(":")
    try:
        dims = [int(d) for d in shape_part.lower().split("x")]
    except ValueError:
        raise SpecInvalid(
            f"cannot read shape {text!r}: write dimensions separated by 'x', e.g. 1x3x224x224"
        ) from None
    return dims, (dtype or None)
