"""archiver: a permanent, queryable archive of AWS Cloud Map operations."""

__version__ = "0.1.0"
