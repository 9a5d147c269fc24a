"""portfolios: currency conversion rates and reporting currency

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('portfolios') as batch:
        batch.add_column(sa.Column('currency_conversion', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('reporting_currency', sa.String(length=3), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('portfolios') as batch:
        batch.drop_column('reporting_currency')
        batch.drop_column('currency_conversion')
