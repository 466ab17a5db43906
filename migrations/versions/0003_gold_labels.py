"""gold labels

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 07:48:35.641805
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op



revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gold_label_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('gold_by', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('gold_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_examples_gold_label_id_labels'), 'labels', ['gold_label_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_examples_gold_label_id_labels'), type_='foreignkey')
        batch_op.drop_column('gold_at')
        batch_op.drop_column('gold_by')
        batch_op.drop_column('gold_label_id')

