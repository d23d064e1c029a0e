"""One open approval request per (channel, sku, location); the approvals run that asked

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

WHERE = "status = 'pending_approval'"


def upgrade() -> None:
    # requests that piled up before this rule: the newest of each key stays open, older ones are superseded
    conn = op.get_bind()
    stale = [r[0] for r in conn.execute(sa.text(
        f"SELECT c.id FROM corrections c WHERE c.{WHERE} AND EXISTS (SELECT 1 FROM corrections n WHERE n.{WHERE} "
        "AND n.channel = c.channel AND n.sku = c.sku AND n.location = c.location AND n.id > c.id)"))]
    for cid in stale:
        conn.execute(sa.text("UPDATE corrections SET status = 'superseded', detail = 'superseded: a newer request "
                             "for the same channel, SKU and location is open (migration 0004)' WHERE id = :i"), {"i": cid})
        conn.execute(sa.text("UPDATE approvals SET decision = 'superseded', decided_by = 'migration 0004', "
                             "decided_at = CURRENT_TIMESTAMP WHERE correction_id = :i AND decision IS NULL"), {"i": cid})
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('asked_in', sa.String(length=255), nullable=True))
    op.create_index('ux_corrections_open_request', 'corrections', ['channel', 'sku', 'location'], unique=True,
                    sqlite_where=sa.text(WHERE), postgresql_where=sa.text(WHERE))


def downgrade() -> None:
    op.drop_index('ux_corrections_open_request', table_name='corrections')
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.drop_column('asked_in')
