"""The package version: one place, read by ``skinfomax.__version__``, model files and the build."""

__version__ = "0.1.0"
