"""dripml: one spec in, a tuned, registered and served model out."""
__version__ = "0.1.0"
