"""Add the view instance_states: who was registered when, for plain SQL and `instances`.

One row per successful REGISTER_INSTANCE or DEREGISTER_INSTANCE with an instance id:
the change it made (``registered`` 1 or 0) and the span it decides, from its
UpdateDate (``valid_from``) to the next change of the same instance of the same
service (``valid_until``, NULL while it is the last). An operation takes effect when
it succeeds, at its UpdateDate; FAIL, SUBMITTED and PENDING change nothing; ties go
by UpdateDate, then CreateDate, then Id, so of two changes at one instant the first
decides an empty span. The instances registered at T are the rows with
``registered = 1 AND valid_from <= T AND (valid_until IS NULL OR valid_until > T)``.
``previous_type`` is NULL for the first change the archive knows of an instance: a
first change that is a deregistration means it was registered before the archive
began. The same columns on both engines (docs/design.md, "Instances").

Revision ID: b7e3a9d1c254
Revises: a4d2f6c8e013
Create Date: 2026-12-05 13:00:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "b7e3a9d1c254"
down_revision: str | Sequence[str] | None = "a4d2f6c8e013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INSTANCE_STATES = """
CREATE VIEW instance_states AS
SELECT s.name AS source, c.source_id, c.service_id, v.name AS service_name,
       n.name AS namespace_name, c.instance_id, c.registered, c.valid_from,
       c.valid_until, c.type, c.previous_type, c.operation_id
FROM (
    SELECT o.source_id, o.service_id, o.instance_id, o.type, o.id AS operation_id,
           CASE WHEN o.type = 'REGISTER_INSTANCE' THEN 1 ELSE 0 END AS registered,
           o.update_date AS valid_from,
           LEAD(o.update_date) OVER w AS valid_until,
           LAG(o.type) OVER w AS previous_type,
           o.namespace_id
    FROM operations o
    WHERE o.status = 'SUCCESS' AND o.instance_id IS NOT NULL
      AND o.type IN ('REGISTER_INSTANCE', 'DEREGISTER_INSTANCE')
    WINDOW w AS (PARTITION BY o.source_id, o.service_id, o.instance_id
                 ORDER BY o.update_date, o.create_date, o.id)
) AS c
JOIN sources s ON s.id = c.source_id
LEFT JOIN services v ON v.source_id = c.source_id AND v.id = c.service_id
LEFT JOIN namespaces n ON n.source_id = c.source_id
     AND n.id = COALESCE(c.namespace_id, v.namespace_id)
"""


def upgrade() -> None:
    op.execute(INSTANCE_STATES)


def downgrade() -> None:
    op.execute("DROP VIEW instance_states")
