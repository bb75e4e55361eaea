"""archiver: a permanent, queryable archive of AWS Cloud Map operations.

Installed as the distribution ``cloudmap-archiver``; imported as ``archiver``.
"""

__version__ = "0.3.0"
DISTRIBUTION = "cloudmap-archiver"
