"""The version of steadyclf (the one of pyproject.toml), importable from any stage."""

__all__ = ["__version__"]

__version__ = "0.1.0"
