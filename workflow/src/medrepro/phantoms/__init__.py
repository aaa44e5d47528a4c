"""Synthetic phantoms with exact ground truth, built from analytic signed-distance functions in mm."""
