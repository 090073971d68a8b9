"""Tools beside the package that its tests and ``docs/`` scripts share."""
