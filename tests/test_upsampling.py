"""The transposed-conv replacement of trilinear x2 upsampling (the paper's OpenVINO workaround).

``Upsample3d(mode="deconv")`` is a depthwise ``ConvTranspose3d(k=4, s=2, p=1)`` initialised with
``[1/4, 3/4, 3/4, 1/4]^{(x)3}``. It equals ``F.interpolate(trilinear, align_corners=False)`` in
the interior; on the outer layer of output voxels interpolation replicates the edge value and
the deconvolution zero-pads, so the outputs differ there by up to ``(1 - (3/4)^3) |x|``
(a corner, where all three axes miss their 1/4 neighbour).
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from medrepro.nets.blocks import Upsample3d, linear_upsampling_kernel


def _diffs(x: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    up = Upsample3d(x.shape[1], mode="deconv")
    with torch.no_grad():
        deconv = up(x)
        tri = F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=False)
    assert deconv.shape == tri.shape == (x.shape[0], x.shape[1], *(2 * s for s in x.shape[2:]))
    diff = (deconv - tri).abs()
    interior = diff[:, :, 1:-1, 1:-1, 1:-1]
    border = diff.clone()
    border[:, :, 1:-1, 1:-1, 1:-1] = 0
    return float(interior.max()), float(border.max()), diff


def test_kernel_is_separable_linear_interpolation() -> None:
    k = linear_upsampling_kernel()
    assert k.shape == (4, 4, 4)
    assert abs(float(k.sum()) - 8.0) < 1e-6  # 2^3 outputs per input voxel, weights sum to 1 each
    assert float(k[1, 2, 1]) == pytest.approx(0.75**3)


@pytest.mark.parametrize("shape", [(2, 3, 6, 5, 4), (1, 8, 8, 8, 4)])
def test_deconv_equals_trilinear_in_interior(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape)
    interior, border, _ = _diffs(x)
    print(f"\n{shape}: max |deconv - trilinear| interior {interior:.2e}, border {border:.3f}")
    assert interior < 1e-6
    assert border > 1e-3  # the outputs really differ on the border ...
    assert border <= (1 - 0.75**3) * float(x.abs().max()) + 1e-6  # ... but by a bounded amount


def test_border_difference_for_constant_input() -> None:
    """For x = 1: faces get 3/4, edges 9/16, corners 27/64 instead of 1."""
    x = torch.ones(1, 1, 4, 4, 4)
    _, border, diff = _diffs(x)
    d = diff[0, 0]
    assert float(d[0, 4, 4]) == pytest.approx(0.25)
    assert float(d[0, 0, 4]) == pytest.approx(1 - 9 / 16)
    assert float(d[0, 0, 0]) == pytest.approx(1 - 27 / 64)
    assert border == pytest.approx(1 - 27 / 64)
    assert float(d[1:-1, 1:-1, 1:-1].max()) < 1e-6
    print(f"\nconstant input: border difference faces 0.25, edges 0.4375, corners {border:.4f}")


def test_other_modes_shapes_and_learnability() -> None:
    x = torch.randn(1, 4, 3, 3, 2)
    assert Upsample3d(4, "trilinear")(x).shape == (1, 4, 6, 6, 4)
    plain = Upsample3d(4, "deconv2")
    assert plain(x).shape == (1, 4, 6, 6, 4)
    assert sum(p.numel() for p in plain.parameters()) == 4 * 4 * 8
    frozen = Upsample3d(4, "deconv", learnable=False)
    assert not frozen.up.weight.requires_grad and "up.weight" in frozen.state_dict()
    with pytest.raises(ValueError, match="unknown upsample"):
        Upsample3d(4, "nearest")
