"""status enforced by the database (CHECK); create_in_flight_until replaces comparing submitted_at

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

STATUSES = ('queued', 'submitting', 'running', 'storing', 'succeeded', 'failed', 'canceled')
PREDICTION_STATUSES = ('starting', 'processing', 'succeeded', 'failed', 'canceled', 'aborted')


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('create_in_flight_until', sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint('ck_jobs_status', _in('status', STATUSES))
        batch.create_check_constraint('ck_jobs_target', _in('target', ('version', 'model', 'deployment')))
    # A claim whose create had not answered (submitted_at older than the claim) keeps its window.
    op.execute(
        "UPDATE jobs SET create_in_flight_until = next_check_at WHERE status = 'submitting' "
        "AND submit_started_at IS NOT NULL AND (submitted_at IS NULL OR submitted_at < submit_started_at)"
    )


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_constraint('ck_jobs_target', type_='check')
        batch.drop_constraint('ck_jobs_status', type_='check')
        batch.drop_column('create_in_flight_until')
