"""rlmake: a Makefile-style build tool with content hashing, caching and provenance."""

__version__ = "0.1.0"
