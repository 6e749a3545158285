"""Model architectures (one module per family), the torch-free registry of their names and `build.build_model`."""
