"""SKU-hash shards: sku_bucket on inventory and listing rows, the shard that found each finding

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 14:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

ROW_TABLES = ("inventory_rows", "listing_rows")


def upgrade() -> None:
    from omnirecon.model.sharding import sku_bucket

    conn = op.get_bind()
    for table in ROW_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('sku_bucket', sa.SmallInteger(), nullable=True))
        # rows landed before sharding: their bucket from their SKU, one UPDATE per distinct SKU batch
        skus = [r[0] for r in conn.execute(sa.text(f"SELECT DISTINCT sku FROM {table}"))]
        rows = [{"b": sku_bucket(s), "s": s} for s in skus]
        for i in range(0, len(rows), 5000):
            conn.execute(sa.text(f"UPDATE {table} SET sku_bucket = :b WHERE sku = :s"), rows[i:i + 5000])
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('sku_bucket', existing_type=sa.SmallInteger(), nullable=False)
            batch_op.create_index(f'ix_{table}_snapshot_bucket', ['snapshot_id', 'sku_bucket'], unique=False)
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shard', sa.String(length=16), nullable=False, server_default='all'))


def downgrade() -> None:
    with op.batch_alter_table('findings', schema=None) as batch_op:
        batch_op.drop_column('shard')
    for table in ROW_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_snapshot_bucket')
            batch_op.drop_column('sku_bucket')
