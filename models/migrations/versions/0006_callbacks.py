"""signed callbacks: a callback URL per job (and a default plus a sealed signing secret per key), and the
durable outbox of deliveries with their attempts

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'  # was '0004' on this branch; chained after 0005 (scheduling) when main was merged in
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(sa.Column('callback_url', sa.Text(), nullable=True))
        batch.add_column(sa.Column('callback_secret_sealed', sa.Text(), nullable=True))
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('callback_url', sa.Text(), nullable=True))
        batch.add_column(sa.Column('callback_on_running', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.create_table(
        'callback_deliveries',
        sa.Column('id', sa.String(40), nullable=False),
        sa.Column('job_id', sa.String(32), nullable=False),
        sa.Column('api_key_id', sa.String(32), nullable=True),
        sa.Column('event', sa.String(16), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('body', sa.Text(), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('error_code', sa.String(32), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'failed')", name='ck_callback_deliveries_state'),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name='fk_callback_deliveries_job_id_jobs',
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name='fk_callback_deliveries_api_key_id_api_keys'),
        sa.PrimaryKeyConstraint('id', name='pk_callback_deliveries'),
    )
    op.create_index('ix_callback_deliveries_job', 'callback_deliveries', ['job_id'])
    op.create_index('ix_callback_deliveries_due', 'callback_deliveries', ['state', 'next_attempt_at'])
    op.create_table(
        'callback_attempts',
        sa.Column('delivery_id', sa.String(40), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('latency_ms', sa.Float(), nullable=False),
        sa.Column('error', sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(['delivery_id'], ['callback_deliveries.id'],
                                name='fk_callback_attempts_delivery_id_callback_deliveries', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('delivery_id', 'attempt', name='pk_callback_attempts'),
    )


def downgrade() -> None:
    op.drop_table('callback_attempts')
    op.drop_index('ix_callback_deliveries_due', table_name='callback_deliveries')
    op.drop_index('ix_callback_deliveries_job', table_name='callback_deliveries')
    op.drop_table('callback_deliveries')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('callback_on_running')
        batch.drop_column('callback_url')
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('callback_secret_sealed')
        batch.drop_column('callback_url')
