"""Image preprocessing: orientation, physical geometry, resampling and intensity normalisation.

Conventions (see ``docs/architecture.md``): physical points are LPS millimetres; a grid is
``origin (3,)``, ``spacing (3,)``, ``direction (3, 3)`` (columns are the axes) and ``size (3,)``
voxels, with ``mm = origin + direction @ (spacing * index)`` and voxel centres at integer indices.
Arrays handed to networks are ``(X, Y, Z)``.
"""
