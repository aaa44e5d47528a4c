"""DeepMedic-39 of the LowRes paper: two pathways of valid convolutions, 87^3 -> 39^3.

Kamnitsas et al., "Efficient multi-scale 3D CNN with fully connected CRF for accurate brain
lesion segmentation", MedIA 2017, as re-implemented for Shirokikh et al. 2021 (paper 003) in
``neuro-ml/low-resolution`` (``lowres/model/deepmedic39.py``, dpipe blocks):

- full-resolution pathway: centred crop of ``crop`` voxels per side, ``PostAct(1, w0, 3)``,
  ``Conv3d(w0, w0, 3, bias=False)``, residual blocks ``w0 -> w1 -> ... -> wK`` (valid ``3^3``);
- low-resolution pathway: ``AvgPool3d(3)``, the same layers (own weights), nearest ``x3``
  upsampling;
- head: concatenate (``2 wK`` channels), ``ResBlock(2 wK, head, kernel 1)``,
  ``PreAct(head, 1, 1, bias=False) -> BatchNorm3d(1)``.

Geometry (voxels, per side): each pathway loses ``L = 2 + 2K`` voxels at its own resolution
(stem 2, each residual block 2); the low-resolution pathway therefore loses ``3L`` full-resolution
voxels, and the crop ``(factor - 1) L`` makes the full-resolution pathway lose as much. So
``margin = factor * L`` (paper: ``L = 8``, ``crop = 16``, margin 24, 87 -> 39), the input side must
be a multiple of ``factor`` and the output side is then ``input - 2 margin`` (a multiple of
``factor`` too). Any output side ``3k`` works: 39 <- 87, 45 <- 93, 51 <- 99.

At the paper's widths ``(30, 40, 40, 50)``, head 150, this is 678,152 parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medrepro.nets.shapes import check_sides
from medrepro.nets.unet3d import PostActivation3d, PreActivation3d, ResBlock3d

__all__ = ["DeepMedic", "DeepMedicPathway"]


class DeepMedicPathway(nn.Sequential):
    """``PostAct(in, w0, 3) -> Conv3d(w0, w0, 3) -> ResBlocks(w0 -> ... -> wK)``, all valid.

    ``(N, in, S) -> (N, wK, S - 2 L)`` with ``L = 2 + 2K`` (voxels per side, see :attr:`loss`).
    """

    def __init__(self, in_ch: int, widths: Sequence[int]) -> None:
        super().__init__()
        w0 = int(widths[0])
        self.post = PostActivation3d(in_ch, w0, 3, padding=0)
        self.conv = nn.Conv3d(w0, w0, 3, bias=False)
        pairs = zip(widths[:-1], widths[1:], strict=True)
        self.res = nn.Sequential(*(ResBlock3d(int(a), int(b), 3, padding=0) for a, b in pairs))
        #: voxels lost per side
        self.loss = 2 + 2 * (len(widths) - 1)


class DeepMedic(nn.Module):
    """DeepMedic-39: ``(N, 1, O + 2m, ...)`` -> logits ``(N, 1, O, ...)``, valid convolutions.

    Args:
        widths: channels of the stem and after each residual block (paper ``(30, 40, 40, 50)``).
        head: channels of the ``1^3`` residual head block (paper 150).
        factor: downsampling factor of the low-resolution pathway (paper 3); the output divisor.
        in_channels: input channels (1).
        out_channels: logit channels (1).

    Attributes:
        divisor: output sides must be multiples of ``factor``.
        margin: voxels lost per side (24 at the paper's widths).
        crop: centred crop of the full-resolution pathway, voxels per side (16).

    Raises:
        ValueError: fewer than one width, ``factor < 2``; in ``forward``, an input side that is
            not a multiple of ``factor`` or too small for one output voxel per low-res voxel.
    """

    def __init__(
        self,
        widths: Sequence[int] = (30, 40, 40, 50),
        head: int = 150,
        factor: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or factor < 2:
            raise ValueError(f"DeepMedic: need widths and factor >= 2, got {widths}, {factor}")
        self.full = DeepMedicPathway(in_channels, widths)
        self.low = DeepMedicPathway(in_channels, widths)
        loss = self.full.loss
        self.factor = int(factor)
        self.divisor = self.factor
        self.crop = (self.factor - 1) * loss
        self.margin = self.factor * loss
        self.pool = nn.AvgPool3d(self.factor)
        self.upsample = nn.Upsample(scale_factor=self.factor, mode="nearest")
        self.head = nn.Sequential(
            ResBlock3d(2 * widths[-1], head, 1, padding=0),
            PreActivation3d(head, out_channels, 1, padding=0, bias=False),
            nn.BatchNorm3d(out_channels),
        )

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial output shape ``input - 2 margin`` (voxels); input sides multiples of 3."""
        check_sides(
            tuple(input_shape), self.divisor, "DeepMedic input", 2 * self.margin + self.divisor
        )
        return tuple(int(s) - 2 * self.margin for s in input_shape)

    def input_shape_for(self, output_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial input shape ``output + 2 margin`` (voxels); output sides multiples of 3."""
        check_sides(tuple(output_shape), self.divisor, "DeepMedic output")
        return tuple(int(s) + 2 * self.margin for s in output_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():
            self.output_shape(tuple(x.shape[2:]))
        c = self.crop
        full = self.full(x[:, :, c:-c, c:-c, c:-c])
        low = self.upsample(self.low(self.pool(x)))
        return self.head(torch.cat([full, low], dim=1))
