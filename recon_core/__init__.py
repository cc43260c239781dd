"""contextmri reconstruction core: physics, masks, coils, metadata, prior, DDS, simulator."""

__version__ = "0.1.0"
