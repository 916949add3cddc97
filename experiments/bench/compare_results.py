"""Compare a reproduce output folder's CSVs with another (e.g. the committed CPU results/):
byte identity, and the largest absolute difference of each numeric column.

    python experiments/bench/compare_results.py NEW_DIR results
"""
import csv, sys
from pathlib import Path
new, old = Path(sys.argv[1]), Path(sys.argv[2])
for f in ("fig4.csv", "fig5_7.csv", "fig8.csv"):
    if not (new / f).exists():
        print(f, "missing"); continue
    a = list(csv.DictReader(open(new / f))); b = list(csv.DictReader(open(old / f)))
    same = (new / f).read_bytes() == (old / f).read_bytes()
    print(f"{f}: rows {len(a)} vs {len(b)}, byte-identical {same}")
    if len(a) != len(b): continue
    for k in a[0]:
        try:
            d = [abs(float(x[k]) - float(y[k])) for x, y in zip(a, b)]
            m = [abs(float(y[k])) for y in b]
        except ValueError:
            continue
        if max(d) > 0:
            print(f"   {k}: max |diff| {max(d):.4g} (max |cpu value| {max(m):.4g}), rows differing {sum(x > 0 for x in d)}/{len(d)}")
