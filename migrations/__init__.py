"""The archive's Alembic migrations, packaged as ``archiver.migrations``."""
