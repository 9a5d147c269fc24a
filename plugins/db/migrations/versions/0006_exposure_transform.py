"""portfolios: exposure transform status

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('portfolios') as batch:
        batch.add_column(sa.Column('exposure_transform_status', sa.String(length=32), nullable=False,
                                   server_default='NONE'))


def downgrade() -> None:
    with op.batch_alter_table('portfolios') as batch:
        batch.drop_column('exposure_transform_status')
