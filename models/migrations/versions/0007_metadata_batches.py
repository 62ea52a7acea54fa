"""job metadata (JSONB + GIN on PostgreSQL) and batches as objects (jobs.batch_id, batch_errors)

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

META = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'batches',
        sa.Column('id', sa.String(32), nullable=False),
        sa.Column('api_key_id', sa.String(32), nullable=True),
        sa.Column('callback_url', sa.Text(), nullable=True),
        sa.Column('meta', META, nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('lines', sa.Integer(), nullable=False),
        sa.Column('rejected', sa.Integer(), nullable=False),
        sa.Column('cancel_requested_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('truncated', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name='fk_batches_api_key_id_api_keys'),
        sa.PrimaryKeyConstraint('id', name='pk_batches'),
    )
    op.create_index('ix_batches_key_created', 'batches', ['api_key_id', 'created_at', 'id'])
    op.create_index('ix_batches_created', 'batches', ['created_at', 'id'])
    op.create_index('ix_batches_open', 'batches', ['finished_at', 'sealed_at'])
    op.create_table(
        'batch_errors',
        sa.Column('batch_id', sa.String(32), nullable=False),
        sa.Column('line', sa.Integer(), nullable=False),
        sa.Column('fields', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name='fk_batch_errors_batch_id_batches',
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('batch_id', 'line', name='pk_batch_errors'),
    )
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('meta', META, nullable=True))
        batch.add_column(sa.Column('batch_id', sa.String(32), nullable=True))
        batch.add_column(sa.Column('batch_seq', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_jobs_batch_id_batches', 'batches', ['batch_id'], ['id'])
    op.create_index('ix_jobs_batch_status', 'jobs', ['batch_id', 'status'])
    # A batch's own callback goes through the job-callback outbox: a delivery belongs to a job or a batch.
    with op.batch_alter_table('callback_deliveries') as batch:
        batch.alter_column('job_id', existing_type=sa.String(32), nullable=True)
        batch.add_column(sa.Column('batch_id', sa.String(32), nullable=True))
        batch.create_foreign_key('fk_callback_deliveries_batch_id_batches', 'batches', ['batch_id'], ['id'],
                                 ondelete='CASCADE')
    op.create_index('ix_callback_deliveries_batch', 'callback_deliveries', ['batch_id'])
    op.create_index('ix_jobs_batch_seq', 'jobs', ['batch_id', 'batch_seq'])
    if op.get_bind().dialect.name == 'postgresql':
        # Containment (`meta @> '{"k": "v"}'`) is the only metadata query: jsonb_path_ops is smaller.
        op.create_index('ix_jobs_meta', 'jobs', ['meta'], postgresql_using='gin',
                        postgresql_ops={'meta': 'jsonb_path_ops'})


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_jobs_meta', table_name='jobs')
    op.drop_index('ix_jobs_batch_seq', table_name='jobs')
    op.drop_index('ix_callback_deliveries_batch', table_name='callback_deliveries')
    with op.batch_alter_table('callback_deliveries') as batch:
        batch.drop_constraint('fk_callback_deliveries_batch_id_batches', type_='foreignkey')
        batch.drop_column('batch_id')
    op.drop_index('ix_jobs_batch_status', table_name='jobs')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_constraint('fk_jobs_batch_id_batches', type_='foreignkey')
        batch.drop_column('batch_seq')
        batch.drop_column('batch_id')
        batch.drop_column('meta')
    op.drop_table('batch_errors')
    op.drop_index('ix_batches_open', table_name='batches')
    op.drop_index('ix_batches_created', table_name='batches')
    op.drop_index('ix_batches_key_created', table_name='batches')
    op.drop_table('batches')
