"""scheduling: a job's priority, and per-key weight and limits (the dispatcher's inputs)

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('priority', sa.SmallInteger(), nullable=False, server_default='5'))
        batch.create_check_constraint('ck_jobs_priority', 'priority BETWEEN 0 AND 9')
    # Per-key counts of queued and active jobs: the max_queued check at intake, max_running at dispatch.
    op.create_index('ix_jobs_key_status', 'jobs', ['api_key_id', 'status'])
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('weight', sa.Integer(), nullable=False, server_default='1'))
        batch.add_column(sa.Column('max_running', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('max_queued', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('max_queued')
        batch.drop_column('max_running')
        batch.drop_column('weight')
    op.drop_index('ix_jobs_key_status', 'jobs')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_constraint('ck_jobs_priority', type_='check')
        batch.drop_column('priority')
