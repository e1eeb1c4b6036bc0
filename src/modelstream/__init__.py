"""modelstream: machine-learning models in production on streams."""

__version__ = "0.1.0"
