"""Shape contract of the lowres segmentation networks (``docs/lowres.md``, "Networks").

Every network maps ``(N, 1, D, H, W)`` to one logit channel and declares ``divisor`` (output
sides must be multiples of it, in voxels) and ``margin`` (voxels lost per side by valid
convolutions); ``output_shape`` and ``input_shape_for`` convert between spatial shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SameShapeContract", "check_sides"]


def check_sides(shape: tuple[int, ...], divisor: int, name: str, minimum: int = 1) -> None:
    """Raise ``ValueError`` unless every side of ``shape`` is ``>= minimum`` and divisible."""
    bad = [int(s) for s in shape if int(s) % divisor or int(s) < minimum]
    if bad:
        raise ValueError(
            f"{name}: spatial sides must be multiples of {divisor} and >= {minimum}, "
            f"got {tuple(int(s) for s in shape)}"
        )


class SameShapeContract:
    """Mixin for padded networks whose output has the input's spatial shape (``margin`` 0);
    the class sets ``divisor``."""

    #: voxels lost per side (padded convs: none)
    margin = 0
    divisor: int = 1

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape (voxels) for a spatial input shape: the same."""
        check_sides(tuple(input_shape), self.divisor, f"{type(self).__name__} input")
        return tuple(int(s) for s in input_shape)

    def input_shape_for(self, output_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial input shape (voxels) that yields ``output_shape``: the same."""
        check_sides(tuple(output_shape), self.divisor, f"{type(self).__name__} output")
        return tuple(int(s) for s in output_shape)
