"""hop_windows and trigger_detections: the trigger chain's history per hop and its detected gaps

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 08:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'hop_windows',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('run_id', sa.String(length=128), nullable=True),
        sa.Column('from_system', sa.String(length=16), nullable=False),
        sa.Column('to_system', sa.String(length=16), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('window_from', sa.DateTime(timezone=True), nullable=False),
        sa.Column('window_to', sa.DateTime(timezone=True), nullable=False),
        sa.Column('mechanism', sa.String(length=16), nullable=False),
        sa.Column('poll_interval_s', sa.Float(), nullable=True),
        sa.Column('resolution_s', sa.Float(), nullable=True),
        sa.Column('latency_p50_s', sa.Float(), nullable=True),
        sa.Column('latency_p95_s', sa.Float(), nullable=True),
        sa.Column('latency_max_s', sa.Float(), nullable=True),
        sa.Column('changes_seen', sa.Integer(), nullable=False),
        sa.Column('followed', sa.Integer(), nullable=False),
        sa.Column('missed', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('since', sa.DateTime(timezone=True), nullable=True),
        sa.Column('diagnosis', sa.String(length=32), nullable=True),
        sa.Column('exposure', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_hop_windows_hop', 'hop_windows', ['from_system', 'to_system', 'kind', 'window_to'])
    op.create_table(
        'trigger_detections',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('run_id', sa.String(length=128), nullable=True),
        sa.Column('hop', sa.String(length=40), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('sku', sa.String(length=255), nullable=True),
        sa.Column('order_id', sa.String(length=255), nullable=True),
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('detected_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('expected', sa.String(length=64), nullable=True),
        sa.Column('observed', sa.String(length=64), nullable=True),
        sa.Column('corrected_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('hop', 'kind', 'key', 'changed_at', name='uq_trigger_detections_change'),
    )
    op.create_index('ix_trigger_detections_detected_at', 'trigger_detections', ['detected_at'])


def downgrade() -> None:
    op.drop_index('ix_trigger_detections_detected_at', table_name='trigger_detections')
    op.drop_table('trigger_detections')
    op.drop_index('ix_hop_windows_hop', table_name='hop_windows')
    op.drop_table('hop_windows')
