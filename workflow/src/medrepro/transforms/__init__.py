"""Array transforms shared by the tasks.

- :mod:`medrepro.transforms.heatmaps`: Gaussian heatmap targets for landmarks and sub-voxel
  decoding of (predicted) heatmaps back to input voxel coordinates.

Arrays follow ``docs/architecture.md``: batches ``(N, C, X, Y, Z)``, landmark coordinates
``(N, K, 3)`` continuous voxel indices ``(x, y, z)`` with voxel centres at integers.
"""

from __future__ import annotations

from medrepro.transforms.heatmaps import (
    decode_heatmaps,
    gaussian_heatmaps,
    heatmap_to_input,
    input_to_heatmap,
)

__all__ = ["decode_heatmaps", "gaussian_heatmaps", "heatmap_to_input", "input_to_heatmap"]
