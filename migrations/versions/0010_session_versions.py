"""annotators: a session version that sign-out and password changes advance

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 04:20:00.000000

A session cookie carries the account's session version when it was issued; signing out,
a new password or disabling the account advances the version, which ends every session
(and every copied cookie) issued before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('annotators', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), nullable=False,
                                      server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('annotators', schema=None) as batch_op:
        batch_op.drop_column('session_version')
