"""Tools next to the package, not installed with it: ``python -m benchmarks.bench`` (``make benchmark``)."""
