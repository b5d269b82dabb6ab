"""The package version, in a module of its own so that recall.memory and recall.build need not import
recall itself."""

__version__ = "0.1.0"
