"""Neural-collapse and class-geometry measures of layer representations (no heavy imports)."""
