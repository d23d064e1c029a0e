"""notifications: the platforms' change notifications as received (the live path's durable inbox)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'notifications',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('event_id', sa.String(length=255), nullable=False),
        sa.Column('topic', sa.String(length=128), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('headers', sa.JSON(), nullable=True),
        sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('quarantined', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source', 'event_id', name='uq_notifications_source_event'),
    )
    op.create_index('ix_notifications_received_at', 'notifications', ['received_at'])
    op.create_index('ix_notifications_processed_at', 'notifications', ['processed_at'])


def downgrade() -> None:
    op.drop_index('ix_notifications_processed_at', table_name='notifications')
    op.drop_index('ix_notifications_received_at', table_name='notifications')
    op.drop_table('notifications')
