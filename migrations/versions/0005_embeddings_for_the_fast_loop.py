"""embeddings for the fast loop

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 07:59:37.969475
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op



revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('embeddings',
    sa.Column('example_id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['example_id'], ['examples.id'], name=op.f('fk_embeddings_example_id_examples'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_embeddings_model_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('example_id', name=op.f('pk_embeddings'))
    )
    with op.batch_alter_table('embeddings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_embeddings_model_version_id'), ['model_version_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('embeddings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_embeddings_model_version_id'))

    op.drop_table('embeddings')
