"""Neural-collapse and NCC measures, and label-based probes of frozen layers."""
