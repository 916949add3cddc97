"""Compare a reproduce output folder's CSVs with another (e.g. the committed CPU results/):
byte identity, and the largest absolute difference of each numeric column.

    python experiments/bench/compare_results.py NEW_DIR results
"""
import csv
import sys
from pathlib import Path


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def compare(new: Path, old: Path) -> None:
    for name in ("fig4.csv", "fig5_7.csv", "fig8.csv"):
        if not (new / name).exists():
            print(name, "missing")
            continue
        a, b = rows(new / name), rows(old / name)
        same = (new / name).read_bytes() == (old / name).read_bytes()
        print(f"{name}: rows {len(a)} vs {len(b)}, byte-identical {same}")
        if len(a) != len(b):
            continue
        for k in a[0]:
            try:
                diff = [abs(float(x[k]) - float(y[k])) for x, y in zip(a, b)]
                size = max(abs(float(y[k])) for y in b)
            except ValueError:  # a text column
                continue
            if max(diff) > 0:
                print(f"   {k}: max |diff| {max(diff):.4g} (max |value| {size:.4g}), rows "
                      f"differing {sum(d > 0 for d in diff)}/{len(diff)}")


if __name__ == "__main__":
    compare(Path(sys.argv[1]), Path(sys.argv[2]))
