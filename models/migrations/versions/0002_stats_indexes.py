"""index for the ops stats: creates per minute by submitted_at

Revision ID: 0002
Revises: 0001
"""
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_jobs_submitted', 'jobs', ['submitted_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_jobs_submitted', table_name='jobs')
