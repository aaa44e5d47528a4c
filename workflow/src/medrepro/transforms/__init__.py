"""Array transforms shared by the tasks, one module per concern (imported on use, so that an
OpenVINO-only process does not pull in torch):

- :mod:`medrepro.transforms.heatmaps`: Gaussian heatmap targets for landmarks and sub-voxel
  decoding of (predicted) heatmaps back to input voxel coordinates.
- :mod:`medrepro.transforms.postprocess`: binary mask post-processing (brain extraction).
- :mod:`medrepro.transforms.yolo_boxes`, :mod:`medrepro.transforms.yolo_grid`: YOLO boxes and grids.
- :mod:`medrepro.transforms.patch_sampling`: training patches centred on objects or anywhere.
- :mod:`medrepro.transforms.patches`: whole-volume inference by overlapping patches.
- :mod:`medrepro.transforms.lowres_components`: LowRes stage-1 components and the two-stage assembly.

Arrays follow ``docs/architecture.md``.
"""
