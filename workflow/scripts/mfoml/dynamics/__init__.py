"""Training dynamics: sharpness, input sensitivity, interpolation, weight trajectories,
gradient norms and full-batch gradient descent (no heavy imports here)."""
