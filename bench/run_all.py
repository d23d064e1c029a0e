"""Run every benchmark at its documented size (about 30 minutes on 2 cores); figures go to bench/README.md."""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = [
    ["bench_sandbox.py"],
    ["bench_snapshot.py", "--skus", "100000"],
    ["bench_snapshot.py", "--ledger-rate", "200000", "--pg", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"],
    ["bench_reconcile.py"],
    ["bench_shards.py"],
]

failed = 0
for args in RUNS:
    print(f"==> {' '.join(args)}", flush=True)
    failed += subprocess.run([sys.executable, str(HERE / args[0]), *args[1:]]).returncode != 0
sys.exit(1 if failed else 0)
