"""The scale mode's growth table: for each path, req/s and p99 in the small case and the large one
and the change in %, from a table of median.py rows (the file in argv[1]).

    python3 bench/growth.py TABLE_FILE PATH SMALL_ROW LARGE_ROW [PATH SMALL_ROW LARGE_ROW ...]
"""
import re, sys

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def number(text):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def change(small, large):
    if small is None or large is None or small == 0:
        return "-"
    return f"{(large - small) / small * 100:+.0f}%"


rows = {}
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 6:
        rows[cells[0]] = cells[1:]

print("| path | small: req/s | small: p99 | large: req/s | large: p99 | req/s change | p99 change |")
print("|---|---:|---:|---:|---:|---:|---:|")
args = sys.argv[2:]
for path, small, large in zip(args[0::3], args[1::3], args[2::3]):
    s = rows.get(small, ["-"] * 5)
    l = rows.get(large, ["-"] * 5)
    print(f"| {path} | {s[0]} | {s[2]} | {l[0]} | {l[2]} | "
          f"{change(number(s[0]), number(l[0]))} | {change(ms(s[2]), ms(l[2]))} |")
