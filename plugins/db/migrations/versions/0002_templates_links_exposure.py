"""settings templates, model and analysis data-file links, portfolio exposure run files, run sizes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'settings_templates',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('settings', sa.JSON(), nullable=True),
        sa.Column('creator', sa.String(length=255), nullable=True),
        sa.Column('created', sa.DateTime(timezone=True), nullable=False),
        sa.Column('modified', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_settings_templates_model_id'), 'settings_templates', ['model_id'], unique=False)
    op.create_table(
        'model_data_files',
        sa.Column('model_id', sa.Integer(), nullable=False),
        sa.Column('data_file_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['data_file_id'], ['data_files.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['model_id'], ['models.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('model_id', 'data_file_id'),
    )
    op.create_table(
        'analysis_data_files',
        sa.Column('analysis_id', sa.Integer(), nullable=False),
        sa.Column('data_file_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['analysis_id'], ['analyses.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['data_file_id'], ['data_files.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('analysis_id', 'data_file_id'),
    )
    with op.batch_alter_table('portfolios') as batch:
        batch.add_column(sa.Column('exposure_status', sa.String(length=32), server_default='NONE', nullable=False))
        batch.add_column(sa.Column('exposure_run_file_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('run_errors_file_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_portfolios_exposure_run_file_id', 'stored_files', ['exposure_run_file_id'],
                                 ['id'], ondelete='SET NULL')
        batch.create_foreign_key('fk_portfolios_run_errors_file_id', 'stored_files', ['run_errors_file_id'],
                                 ['id'], ondelete='SET NULL')
    with op.batch_alter_table('analyses') as batch:
        batch.add_column(sa.Column('lookup_chunks', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('analysis_chunks', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('num_events_total', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('analyses') as batch:
        batch.drop_column('num_events_total')
        batch.drop_column('analysis_chunks')
        batch.drop_column('lookup_chunks')
    with op.batch_alter_table('portfolios') as batch:
        batch.drop_constraint('fk_portfolios_run_errors_file_id', type_='foreignkey')
        batch.drop_constraint('fk_portfolios_exposure_run_file_id', type_='foreignkey')
        batch.drop_column('run_errors_file_id')
        batch.drop_column('exposure_run_file_id')
        batch.drop_column('exposure_status')
    op.drop_table('analysis_data_files')
    op.drop_table('model_data_files')
    op.drop_index(op.f('ix_settings_templates_model_id'), table_name='settings_templates')
    op.drop_table('settings_templates')
