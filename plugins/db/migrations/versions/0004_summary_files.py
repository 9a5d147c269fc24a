"""analyses: lookup validation and summary levels files (exposure_summary_report.json, _levels.json)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('analyses') as batch:
        batch.add_column(sa.Column('lookup_validation_file', sa.Text(), nullable=True))
        batch.add_column(sa.Column('summary_levels_file', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('analyses') as batch:
        batch.drop_column('summary_levels_file')
        batch.drop_column('lookup_validation_file')
