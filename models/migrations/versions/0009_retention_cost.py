"""retention (jobs.expires_at, outputs_deleted_at, per-key retention_days), spend caps per key

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('retention_days', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('spend_limit', sa.Float(), nullable=True))
        batch.add_column(sa.Column('spend_period', sa.String(8), nullable=True))
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('outputs_deleted_at', sa.DateTime(timezone=True), nullable=True))
    # Jobs from before retention: 30 days from creation (the default), but never sooner than a day after
    # the upgrade, so an upgrade does not delete old outputs on its first sweep without notice.
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("UPDATE jobs SET expires_at = GREATEST(created_at + interval '30 days', now() + interval '1 day')")
    else:
        op.execute("UPDATE jobs SET expires_at = max(datetime(created_at, '+30 days'), datetime('now', '+1 day'))")
    # Only rows still holding something to delete are in these indexes, so a sweep's bounded batch reads
    # the due rows and nothing else, however many jobs were already purged.
    op.create_index('ix_jobs_expiring', 'jobs', ['expires_at'],
                    postgresql_where=sa.text('outputs_deleted_at IS NULL'),
                    sqlite_where=sa.text('outputs_deleted_at IS NULL'))
    op.create_index('ix_jobs_sealed_finished', 'jobs', ['finished_at'],
                    postgresql_where=sa.text('input_sealed IS NOT NULL'),
                    sqlite_where=sa.text('input_sealed IS NOT NULL'))
    # A key's spend in its window (the dispatcher and the submit check sum it).
    op.create_index('ix_jobs_key_finished', 'jobs', ['api_key_id', 'finished_at'])


def downgrade() -> None:
    op.drop_index('ix_jobs_key_finished', table_name='jobs')
    op.drop_index('ix_jobs_sealed_finished', table_name='jobs')
    op.drop_index('ix_jobs_expiring', table_name='jobs')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('outputs_deleted_at')
        batch.drop_column('expires_at')
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('spend_period')
        batch.drop_column('spend_limit')
        batch.drop_column('retention_days')
