"""examples by project and id

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 09:30:00.000000

``ix_examples_project_id`` becomes (project_id, id). SQLite's index already ended in the rowid,
so a project's min/max id and id-ordered walks were index range reads there; on PostgreSQL they
were not (the planner walked the primary key past every other project's rows: the random
fallback of ``claim_next`` took ~90 ms with a second project of 100k texts).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op



revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.drop_index('ix_examples_project_id')
        batch_op.create_index('ix_examples_project_id', ['project_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.drop_index('ix_examples_project_id')
        batch_op.create_index('ix_examples_project_id', ['project_id'], unique=False)

