"""worker heartbeats, and the worker a claim belongs to: a create in flight in a dead worker is looked
up at once instead of after its create window

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'worker_heartbeats',
        sa.Column('id', sa.String(64), nullable=False),
        sa.Column('beat_at', sa.Float(), nullable=False),
        sa.Column('since', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_worker_heartbeats'),
    )
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('claimed_by', sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('claimed_by')
    op.drop_table('worker_heartbeats')
