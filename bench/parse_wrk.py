"""Turns wrk --latency output (stdin) into one markdown table row: name, req/s, p50, p99, errors,
RSS (KiB, from argv) in MiB."""
import re, sys

name, rss_kib = sys.argv[1], int(sys.argv[2] or 0)
text = sys.stdin.read()


def find(pattern, default="-"):
    m = re.search(pattern, text)
    return m.group(1) if m else default


# A pass that stops once it is done (bench/sessions_once.lua) times itself: wrk's own figure
# divides by the time until bench/run interrupted it.
rps = find(r"Pass requests/sec:\s+([\d.]+)", None) or find(r"\nRequests/sec:\s+([\d.]+)")
p50 = find(r"\n\s+50%\s+(\S+)")
p99 = find(r"\n\s+99%\s+(\S+)")
non2xx = int(find(r"Non-2xx or 3xx responses:\s+(\d+)", "0"))
socket = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", find(r"Socket errors:(.*)", "")))
rps_fmt = f"{float(rps):,.0f}" if rps != "-" else "-"
print(f"| {name} | {rps_fmt} | {p50} | {p99} | {non2xx + socket} | {rss_kib // 1024} MiB |")
