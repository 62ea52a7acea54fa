"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 01:08:15.750612
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('target', sa.String(length=16), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('version', sa.String(length=300), nullable=True),
    sa.Column('deployment', sa.String(length=200), nullable=True),
    sa.Column('input_public', sa.JSON(), nullable=False),
    sa.Column('secret_names', sa.JSON(), nullable=False),
    sa.Column('input_sealed', sa.Text(), nullable=True),
    sa.Column('api_key_id', sa.String(length=32), nullable=True),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=True),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_requested_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('prediction_id', sa.String(length=64), nullable=True),
    sa.Column('prediction_status', sa.String(length=16), nullable=True),
    sa.Column('prediction_get_url', sa.Text(), nullable=True),
    sa.Column('prediction_cancel_url', sa.Text(), nullable=True),
    sa.Column('prediction_created_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('prediction_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('output_refs', sa.JSON(), nullable=True),
    sa.Column('predict_time', sa.Float(), nullable=True),
    sa.Column('total_time', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submit_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('detected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_check_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('polls', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('deliveries', sa.Integer(), nullable=False),
    sa.Column('queue_time', sa.Float(), nullable=True),
    sa.Column('start_time', sa.Float(), nullable=True),
    sa.Column('detection_lag', sa.Float(), nullable=True),
    sa.Column('storage_time', sa.Float(), nullable=True),
    sa.Column('end_to_end_time', sa.Float(), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name=op.f('fk_jobs_api_key_id_api_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('api_key_id', 'idempotency_key', name=op.f('uq_jobs_api_key_id_idempotency_key'))
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_created', ['created_at', 'id'], unique=False)
        batch_op.create_index('ix_jobs_finished', ['finished_at'], unique=False)
        batch_op.create_index('ix_jobs_key_created', ['api_key_id', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_jobs_prediction', ['prediction_id'], unique=False)
        batch_op.create_index('ix_jobs_status_check', ['status', 'next_check_at'], unique=False)
        batch_op.create_index('ix_jobs_status_created', ['status', 'created_at', 'id'], unique=False)

    op.create_table('job_outputs',
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('storage_key', sa.Text(), nullable=False),
    sa.Column('storage_uri', sa.Text(), nullable=False),
    sa.Column('stored_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_outputs_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'index', name=op.f('pk_job_outputs'))
    )
    


def downgrade() -> None:
    
    op.drop_table('job_outputs')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_status_created')
        batch_op.drop_index('ix_jobs_status_check')
        batch_op.drop_index('ix_jobs_prediction')
        batch_op.drop_index('ix_jobs_finished')
        batch_op.drop_index('ix_jobs_key_created')
        batch_op.drop_index('ix_jobs_created')

    op.drop_table('jobs')
    op.drop_table('api_keys')
    
