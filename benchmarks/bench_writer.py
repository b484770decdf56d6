"""Update two columns of a 100k-contact workbook: sheetflow's patch writer vs openpyxl load + save.

    python benchmarks/bench_writer.py [N]        # default 100000

Each writer runs in its own subprocess so peak memory (ru_maxrss) is its own. Both write the same
values (a score and a lifecycle stage for every contact) into a copy of bench-data/contacts-N.xlsx.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _values(n: int) -> tuple[list[int], list[str]]:
    return [(i * 7) % 100 for i in range(n)], [("lead", "mql", "sql")[i % 3] for i in range(n)]


def patch(src: str, dst: str, n: int) -> None:
    from sheetflow.book.patch import SheetPatch
    from sheetflow.book.xlsx.apply import patch_workbook

    scores, stages = _values(n)
    cells = {}
    for i in range(n):
        cells[(i + 2, 15)] = scores[i]  # O: score
        cells[(i + 2, 16)] = stages[i]  # P: lifecycle_stage
    patch_workbook(src, dst, [SheetPatch("Contacts", cells)])


def openpyxl_save(src: str, dst: str, n: int) -> None:
    from openpyxl import load_workbook

    scores, stages = _values(n)
    wb = load_workbook(src)
    ws = wb["Contacts"]
    for i in range(n):
        ws.cell(i + 2, 15).value = scores[i]
        ws.cell(i + 2, 16).value = stages[i]
    wb.save(dst)


def child(kind: str, src: str, dst: str, n: int) -> None:
    t = time.perf_counter()
    (patch if kind == "patch" else openpyxl_save)(src, dst, n)
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - t,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    from generate import OUT, generate

    source = OUT / f"contacts-{n}.xlsx"
    if not source.exists():
        generate(n)
    print(f"update 2 columns x {n} rows of {source.name} ({source.stat().st_size / 1e6:.1f} MB)")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("patch", "openpyxl"):
            src = Path(tmp) / f"in-{kind}.xlsx"
            shutil.copy(source, src)
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    kind,
                    str(src),
                    str(Path(tmp) / f"out-{kind}.xlsx"),
                    str(n),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  {kind:>9}: {r['seconds']:6.1f} s, peak {r['peak_mb']:6.0f} MB")


if __name__ == "__main__":
    main()
