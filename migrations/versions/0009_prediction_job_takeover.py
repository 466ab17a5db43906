"""prediction jobs: taken over once when their worker dies

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 18:20:00.000000

A running prediction job whose worker stopped heartbeating is failed and queued again once,
as a new job that names the one it took over (``retry_of``), so the Export page can say so
and a job that kills its worker every time is not run forever.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('prediction_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retry_of', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('prediction_jobs', schema=None) as batch_op:
        batch_op.drop_column('retry_of')
