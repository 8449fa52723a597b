"""The errors datagen raises. Each carries one complete sentence a user can act on."""


class DatagenError(Exception):
    """Base class: the CLI prints these as a single 'Error: ...' line."""


class SpecError(DatagenError):
    """A job file that cannot be read, or a key or value in it that is wrong."""


class ModelError(DatagenError):
    """A morphable model that is missing, corrupt, or cannot be converted."""


class ShardError(DatagenError):
    """A shard that is truncated, corrupt, or does not match its manifest."""


class RenderError(DatagenError):
    """The headless OpenGL context could not be created or used."""


class DiskFullError(DatagenError):
    """The output's file system is full (or over its quota, or read-only): retrying cannot help."""


class PhotoError(DatagenError):
    """A photo that cannot be read or fitted."""
