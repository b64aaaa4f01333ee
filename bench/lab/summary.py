#!/usr/bin/env python3
"""Summarise one run of bench/coldstart from its CSV.

usage: summary.py CSV [RUN_ID]     (default: the last run in the file)

Per workload and variant: the median and min-max of the total (pull + run)
over the rounds whose status is ok, the medians of pull, run, bytes on the
link and RSS, and the ratio of the variant's median total to overlay's in
the same run (issue 9's targets beside it).  Failed rounds are counted,
never averaged in.
"""
import csv
import statistics
import sys

# issue 9: total as a fraction of overlayfs's, on the shaped link
TARGET = {"lazy:esgz": 0.16, "lazy:esgz-opt": 0.13,
          "lazy:zstdchunked": 0.16, "lazy:org": 0.60}
RSS_TARGET_KB = 15 * 1024


def num(rows, key):
    out = []
    for r in rows:
        try:
            out.append(float(r[key]))
        except (ValueError, KeyError):
            pass
    return out


def med(v):
    return statistics.median(v) if v else None


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def main():
    path = sys.argv[1]
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{path}: no rows")
    rid = sys.argv[2] if len(sys.argv) > 2 else rows[-1]["run_id"]
    rows = [r for r in rows if r["run_id"] == rid]
    if not rows:
        sys.exit(f"{path}: no rows of run {rid}")
    # a +trace variant's unmeasured first run (round 0) records its traces
    recorded = sorted({r["variant"] for r in rows
                       if r["status"] == "recording"})
    rows = [r for r in rows if r["status"] != "recording"]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    rounds = max(int(r["round"]) for r in rows)
    snaps = sorted({r.get("snapshotter", "-") for r in rows} - {"-"})
    print(f"# run {rid}: median (min-max) over {rounds} round(s); "
          "ratio = median total / overlay's median total, same run")
    if snaps:
        print(f"# lazy variants served by: {', '.join(snaps)}")
    if recorded:
        print(f"# access traces recorded by an unmeasured first run for: "
              f"{', '.join(recorded)}")
    for wl in workloads:
        print(f"\nworkload {wl}")
        print(f"{'variant':<18} {'ok':>5} {'total s':>20} {'pull s':>7} "
              f"{'fetch s':>7} {'run s':>6} {'link MB':>8} {'image MB':>8} "
              f"{'RSS MB':>7} {'ratio':>6} {'target':>7}")
        base = med(num([r for r in rows if r["workload"] == wl
                        and r["variant"] == "overlay"
                        and r["status"] == "ok"], "total_s"))
        for v in variants:
            all_ = [r for r in rows if r["workload"] == wl
                    and r["variant"] == v]
            ok = [r for r in all_ if r["status"] == "ok"]
            tot = num(ok, "total_s")
            t = med(tot)
            span = f"{t:.2f} ({min(tot):.2f}-{max(tot):.2f})" if tot else "-"
            rx = med(num(ok, "rx_bytes"))
            img = med(num(all_, "image_bytes"))
            rss = med(num(ok, "lp_rss_kb"))
            ratio = t / base if (t is not None and base) else None
            target = TARGET.get(v.removesuffix("+trace"))
            mark = ""
            if ratio is not None and target is not None:
                mark = " ok" if ratio <= target else " MISS"
            if rss is not None and rss > RSS_TARGET_KB:
                mark += " rss-MISS"
            print(f"{v:<18} {len(ok):>2}/{len(all_):<2} {span:>20} "
                  f"{fmt(med(num(ok, 'pull_s'))):>7} "
                  f"{fmt(med(num(ok, 'fetch_s'))):>7} "
                  f"{fmt(med(num(ok, 'run_s'))):>6} "
                  f"{fmt(rx / 1e6 if rx is not None else None, '.1f'):>8} "
                  f"{fmt(img / 1e6 if img is not None else None, '.1f'):>8} "
                  f"{fmt(rss / 1024 if rss is not None else None, '.1f'):>7} "
                  f"{fmt(ratio):>6} "
                  f"{('<=' + format(target, '.2f')) if target else '':>7}"
                  f"{mark}")
            bad = sorted({r["status"] for r in all_ if r["status"] != "ok"})
            if bad:
                print(f"{'':<18} failed rounds: {', '.join(bad)}")


if __name__ == "__main__":
    main()
