"""An index for the latest finished run of a kind (the InboxTrigger asks every second for the last live run's
next deadline)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 15:30:00
"""
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_runs_kind_status_finished', 'runs', ['kind', 'status', 'finished_at'])


def downgrade() -> None:
    op.drop_index('ix_runs_kind_status_finished', table_name='runs')
