"""Folds the rows of several rounds (markdown rows from parse_wrk.py, stdin) into one row per
path, in first-seen order: the median of req/s, p50 and p99, the sum of errors, the largest RSS."""
import re, statistics, sys

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def show(v):
    return f"{v * 1000:.0f}us" if v < 1 else (f"{v:.2f}ms" if v < 1000 else f"{v / 1000:.2f}s")


rows = {}
for line in sys.stdin:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 6:
        rows.setdefault(cells[0], []).append(cells[1:])

for name, runs in rows.items():
    if any("-" in (r[0], r[1], r[2]) for r in runs):
        print(f"| {name} | - | - | - | - | - |")
        continue
    rps = statistics.median(float(r[0].replace(",", "")) for r in runs)
    p50 = statistics.median(ms(r[1]) for r in runs)
    p99 = statistics.median(ms(r[2]) for r in runs)
    errors = sum(int(r[3]) for r in runs)
    rss = max(int(r[4].split()[0]) for r in runs)
    print(f"| {name} | {rps:,.0f} | {show(p50)} | {show(p99)} | {errors} | {rss} MiB |")
