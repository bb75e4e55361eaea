"""Answers from the archive, offline: ``query`` (the filters in SQL; the instances),
``outputs`` (each form: table, json, csv, ids, count; the export's file and
manifest), ``report`` (the HTML report), ``web`` (Datasette) and ``status`` (per
source: text, a check, Prometheus metrics). Imports ``store`` and the core, never
``sync`` or ``cli``.

The words the commands offer as choices are here, on the package's face, so that the
command line can list them in ``--help`` without loading the database layer.
"""

from typing import Literal

OrderBy = Literal["update_date", "create_date", "id"]
Output = Literal["table", "json", "csv", "ids", "count"]
