"""The archive: engines and migrations (``db``), the handle and its locks
(``archive``), the tables (``models``) and every statement that changes them
(``write``). Engine differences live here and nowhere else. Imports the core only."""
