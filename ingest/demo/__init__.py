"""The built-in demo world: procedural images with planted concepts and a small CNN."""
