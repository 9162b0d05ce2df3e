#!/usr/bin/python3
"""Merges the table.md of several separate bench/run.sh runs into one
markdown table whose cells are the range (min-max) of that cell over the
runs. A figure quoted in README.md or RESULTS.md must hold as such a range
over at least three runs.

    python3 bench/ranges.py /tmp/bench1/table.md /tmp/bench2/table.md /tmp/bench3/table.md
"""

import sys


def read_table(path):
    rows, header = {}, None
    with open(path) as f:
        for line in f:
            if not line.startswith("| "):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0] == "workload":
                header = cells
            elif not cells[0].startswith("---"):
                rows[(cells[0], cells[1])] = dict(zip(header, cells))
    return rows


def number(text):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def cell(values, ratio):
    lo, hi = min(values), max(values)
    if hi >= 100:
        fmt = "{:,.0f}".format
    elif ratio:
        fmt = "{:.2f}".format
    else:
        fmt = "{:.1f}".format
    return fmt(lo) if lo == hi else "%s–%s" % (fmt(lo), fmt(hi))


def main(paths):
    tables = [read_table(p) for p in paths]
    keys = list(tables[0])
    cols = [c for c in tables[0][keys[0]] if c not in ("workload", "metric")]
    print("| workload | metric | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for key in keys:
        out = []
        for col in cols:
            values = [v for t in tables if key in t
                      for v in [number(t[key].get(col, ""))] if v is not None]
            out.append(cell(values, "/" in col) if values else "–")
        print("| %s | %s | %s |" % (key[0], key[1], " | ".join(out)))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
