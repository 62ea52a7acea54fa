"""retries: per-job retry policy and attempt number, finished attempts (job_attempts), bulk actions

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('retry_max_attempts', sa.SmallInteger(), nullable=False, server_default='1'))
        batch.add_column(sa.Column('retry_on', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('attempt', sa.Integer(), nullable=False, server_default='1'))
        batch.add_column(sa.Column('retries_left', sa.SmallInteger(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('deadline_seconds', sa.Float(), nullable=True))
    op.create_table(
        'job_attempts',
        sa.Column('job_id', sa.String(32), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('prediction_id', sa.String(64), nullable=True),
        sa.Column('prediction_status', sa.String(16), nullable=True),
        sa.Column('error_code', sa.String(64), nullable=True),
        sa.Column('error_message', sa.Text(), nullable=True),
        sa.Column('metrics', sa.JSON(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name='fk_job_attempts_job_id_jobs', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('job_id', 'attempt', name='pk_job_attempts'),
    )
    op.create_table(
        'bulk_actions',
        sa.Column('id', sa.String(32), nullable=False),
        sa.Column('api_key_id', sa.String(32), nullable=True),
        sa.Column('action', sa.String(16), nullable=False),
        sa.Column('filter', sa.JSON(), nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('matched', sa.Integer(), nullable=False),
        sa.Column('done', sa.Integer(), nullable=False),
        sa.Column('skipped', sa.Integer(), nullable=False),
        sa.Column('skipped_secrets_deleted', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name='fk_bulk_actions_api_key_id_api_keys'),
        sa.PrimaryKeyConstraint('id', name='pk_bulk_actions'),
    )
    op.create_index('ix_bulk_actions_key_created', 'bulk_actions', ['api_key_id', 'created_at'])


def downgrade() -> None:
    op.drop_index('ix_bulk_actions_key_created', table_name='bulk_actions')
    op.drop_table('bulk_actions')
    op.drop_table('job_attempts')
    with op.batch_alter_table('jobs') as batch:
        for name in ('deadline_seconds', 'retries_left', 'attempt', 'retry_on', 'retry_max_attempts'):
            batch.drop_column(name)
