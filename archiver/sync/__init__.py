"""The sync: Cloud Map → the archive (``run``), its options (``options``), the
boto3 client and its answer checks (``client``, ``wire``), and many sources at once
(``fleet``). Imports ``store`` and the core, never ``read`` or ``cli``."""
