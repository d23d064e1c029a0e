"""sku_bucket on finding_states: a shard's persist reads the open states of its own buckets only

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 15:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    from omnirecon.model.sharding import sku_bucket

    conn = op.get_bind()
    with op.batch_alter_table('finding_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sku_bucket', sa.SmallInteger(), nullable=True))
    # states opened before: their bucket from their SKU (a state of no SKU keeps NULL), one UPDATE per SKU batch
    skus = [r[0] for r in conn.execute(sa.text("SELECT DISTINCT sku FROM finding_states WHERE sku IS NOT NULL"))]
    rows = [{"b": sku_bucket(s), "s": s} for s in skus]
    for i in range(0, len(rows), 5000):
        conn.execute(sa.text("UPDATE finding_states SET sku_bucket = :b WHERE sku = :s"), rows[i:i + 5000])
    with op.batch_alter_table('finding_states', schema=None) as batch_op:
        batch_op.create_index('ix_finding_states_status_check_bucket', ['status', 'check', 'sku_bucket'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('finding_states', schema=None) as batch_op:
        batch_op.drop_index('ix_finding_states_status_check_bucket')
        batch_op.drop_column('sku_bucket')
