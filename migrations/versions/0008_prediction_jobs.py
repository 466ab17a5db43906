"""prediction jobs

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 16:05:00.000000

One row per request for a model version's predictions on a project's texts: the web app
queues it, a worker writes the file and reports its progress, the Export page offers the file.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op



revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('prediction_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('model_version', sa.Integer(), nullable=False),
    sa.Column('unlabelled_only', sa.Boolean(), nullable=False),
    sa.Column('fmt', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('requested_by', sa.String(length=100), nullable=True),
    sa.Column('worker_id', sa.String(length=200), nullable=True),
    sa.Column('n_done', sa.Integer(), nullable=False),
    sa.Column('n_total', sa.Integer(), nullable=True),
    sa.Column('n_rows', sa.Integer(), nullable=True),
    sa.Column('file_path', sa.String(length=1000), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_prediction_jobs_project_id_projects'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prediction_jobs'))
    )
    with op.batch_alter_table('prediction_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_prediction_jobs_project_status', ['project_id', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('prediction_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_prediction_jobs_project_status')

    op.drop_table('prediction_jobs')
