"""examples by project

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 07:58:09.874991
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op



revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.create_index('ix_examples_project_id', ['project_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.drop_index('ix_examples_project_id')

