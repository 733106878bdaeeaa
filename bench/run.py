"""Benchmark harness (not a test): `segments` against DuckDB and Polars doing
the default job's work on the same generated files, side by side in one run.

    python3 -m pip install -r bench/requirements.txt
    python3 bench/run.py                       # 1M and 10M lines, release build
    python3 bench/run.py --sizes 1M,10M,100M   # 100M needs ~8 GB of disk

For each size and data variant (real: with the duplicate and late lines real
exports carry, as `segments generate` writes by default; clean: --clean) it
generates 24 months (customers in proportion, events off), then times, for
the last month in the steady state (the month before published first) and as
a first run (nothing published): `segments run` with the shipped memory
limit (the default job, and the same job writing only the snapshots and
migrations the peers write), the DuckDB script and the Polars lazy query of
bench/peers.py. Every run is a separate process; wall time, CPU time
(user + system) and peak RSS come from wait4(2). It checks that the three
give the same segment and movement for every customer, then writes a Markdown
report (docs/benchmarks.md by default) with the machine and the versions.
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LINES_PER_CUSTOMER = 18.5  # over 24 months, measured on the generator
LAST = "2025-12"
FIRST_BACKFILL = "2025-01"
# From this many lines, the Polars peer uses its streaming engine (its
# in-memory engine needs ~3 GiB per 10M lines; this machine has ~23 GiB).
STREAMING_FROM = 50_000_000


def parse_size(text: str) -> int:
    units = {"K": 1_000, "M": 1_000_000, "B": 1_000_000_000}
    text = text.strip().upper()
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def _measure(command, cwd):
    """Fork, exec `command` (stdout discarded) and wait4 it: wall time, CPU
    time (user + system), peak RSS and exit code of that process alone."""
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            if cwd:
                os.chdir(cwd)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    return {
        "wall": time.perf_counter() - started,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,
        "code": os.waitstatus_to_exitcode(status),
    }


class Runner:
    """Runs the measured commands from a small process forked when the
    harness starts, before DuckDB and Polars are loaded: a process's peak
    RSS (ru_maxrss) includes the memory of the process it was forked from,
    up to its exec, so a command forked from the harness itself (which
    holds DuckDB's results) was charged the harness's memory — up to 1.7
    GiB at 10M lines. The runner holds about 10 MiB."""

    def __init__(self):
        requests_read, requests_write = os.pipe()
        results_read, results_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(requests_write)
            os.close(results_read)
            with os.fdopen(requests_read) as requests, os.fdopen(results_write, "w") as results:
                for line in requests:
                    request = json.loads(line)
                    results.write(json.dumps(_measure(request["command"], request["cwd"])) + "\n")
                    results.flush()
            os._exit(0)
        os.close(requests_read)
        os.close(results_write)
        self.requests = os.fdopen(requests_write, "w")
        self.results = os.fdopen(results_read)

    def run(self, command, cwd):
        self.requests.write(json.dumps({"command": command, "cwd": cwd}) + "\n")
        self.requests.flush()
        return json.loads(self.results.readline())


RUNNER = None


def run_measured(command, cwd=None, may_fail=False):
    """Run `command` (stdout discarded) from the runner; return wall time,
    CPU time and peak RSS of that process alone. With `may_fail`, a failure
    (a peer killed for lack of memory, say) is returned as `failed` instead
    of stopping the benchmark."""
    measured = RUNNER.run(command, cwd) if RUNNER else _measure(command, cwd)
    code = measured.pop("code")
    if code != 0:
        if may_fail:
            return {**measured, "failed": code}
        sys.exit(f"{' '.join(command)} failed with exit code {code}")
    return measured


def git_revision():
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True).strip()
    except Exception:
        return "unknown"


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            total_kib = int(f.readline().split()[1])
    except OSError:
        total_kib = 0
    return f"{os.cpu_count()} cores ({cpu}), {total_kib / 1024 / 1024:.1f} GiB memory, {platform.system()} {platform.release()}"


def write_config(path, data, warehouse, memory_limit):
    limit = f"  memory_limit: {memory_limit}\n" if memory_limit else ""
    with open(path, "w") as f:
        f.write(
            f"warehouse: {warehouse}\ntimezone: UTC\ninputs:\n  transactions:\n"
            f"    url: {data}/transactions/\n    format: parquet\n    partition_columns: [month]\n"
            f"engine:\n  kind: local\n{limit}"
            "quality:\n  max_active_customers_change: 100\n  max_revenue_change: 100\n"
        )


def compare(segments_warehouse, peer_out, period):
    """Customers whose segment or movement differs between segments and a peer."""
    import duckdb

    snapshot = f"{segments_warehouse}/rfm_monthly/snapshots/period={period}/part-0.parquet"
    migrations = f"{segments_warehouse}/rfm_monthly/migrations/period={period}/part-0.parquet"
    peer = f"{peer_out}/period={period}"
    return duckdb.connect().execute(
        f"""
        SELECT
          (SELECT COUNT(*) FROM '{snapshot}' s FULL JOIN '{peer}/snapshot.parquet' p USING (customer_id)
           WHERE s.segment IS DISTINCT FROM p.segment),
          (SELECT COUNT(*) FROM '{migrations}' s FULL JOIN '{peer}/migrations.parquet' p USING (customer_id)
           WHERE s.movement IS DISTINCT FROM p.movement),
          (SELECT COUNT(*) FROM '{snapshot}')
        """
    ).fetchone()


def shipped_memory_limit():
    """engine.memory_limit of config/local.yaml, the config as shipped."""
    with open(os.path.join(REPO, "config", "local.yaml")) as f:
        for line in f:
            if line.strip().startswith("memory_limit:"):
                return line.split(":", 1)[1].split("#")[0].strip()
    return ""


def parse_bytes(text):
    """A size as `engine.memory_limit` takes it (src/model/units.rs):
    `512MiB`, `1.5GiB`, `4GB`, `1000000`; None for '' (no limit)."""
    text = text.strip()
    if not text:
        return None
    split = len(text)
    for i, c in enumerate(text):
        if not (c.isdigit() or c == "."):
            split = i
            break
    units = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6,
             "mib": 2**20, "g": 1e9, "gb": 1e9, "gib": 2**30}
    return int(float(text[:split]) * units[text[split:].strip().lower()])


def previous_period(period):
    year, month = map(int, period.split("-"))
    year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return f"{year:04d}-{month:02d}"


# What a measured task runs: the period, and the periods published before it
# (unmeasured) by segments and by each peer.
def tasks():
    """The tasks, over history that ends with LAST (whatever its length)."""
    last = LAST
    return {
        # The month after a published one: what the monthly CronJob does.
        "steady": (last, last, [previous_period(last)]),
        # Nothing published yet: the previous period is reclassified.
        "first run": (last, last, []),
        "12-period backfill": (month_after(last, -11), last, []),
    }


def month_after(period, months):
    year, month = map(int, period.split("-"))
    index = year * 12 + month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


TASKS = tasks()
assert TASKS["12-period backfill"][0] == FIRST_BACKFILL
# Data variants: what `segments generate` writes by default (exact duplicate
# lines, late lines: what real exports carry) and with --clean.
VARIANTS = {"real": [], "clean": ["--clean"]}
# Jobs segments runs: the default job as shipped (its 8 output tables), and
# the same job writing only what the peers write (snapshots and migrations):
# the like-for-like comparison. Both check and count every input row, and
# compute their orders step per month and merge it (`incremental: month`,
# as shipped since issue 25). A third, `lines`, is the like-for-like job
# with its orders step computed from every line, as before issue 25 (and as
# the peers do). Until 8eb1cf5 `same` grouped every line and a job named
# `incremental` had the month facts.
JOBS = {"full": "all 8 tables", "same": "snapshots + migrations",
        "lines": "snapshots + migrations, orders from every line"}


def same_outputs_job(work, every_line=False):
    """jobs/rfm_monthly.yaml with `outputs: [snapshots, migrations]`, its SQL
    read from the repository's sql/ (and, with every_line, its orders step
    computed from every line: no `incremental`)."""
    with open(os.path.join(REPO, "jobs", "rfm_monthly.yaml")) as f:
        text = f.read()
    head, _, _ = text.partition("\noutputs:\n")
    if every_line:
        plain = head.replace("    incremental: month\n", "", 1)
        assert plain != head, "the default job's orders step is incremental"
        head = plain
    name = "rfm_same_outputs_lines.yaml" if every_line else "rfm_same_outputs.yaml"
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(head)
        f.write(f"\nsql_dir: {os.path.join(REPO, 'sql')}\noutputs:\n  - snapshots\n  - migrations\n")
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1M,10M", help="transaction lines per data set, e.g. 1M,10M,100M")
    parser.add_argument("--variants", default="real,clean",
                        help="data variants: real (duplicate and late lines, the default of `segments generate`), clean (--clean)")
    parser.add_argument("--tasks", default="steady,first run",
                        help="comma-separated: steady, first run, 12-period backfill")
    parser.add_argument("--work", default=os.path.join(REPO, "target", "bench"), help="data and outputs")
    parser.add_argument("--binary", help="a segments binary (default: cargo build --release)")
    parser.add_argument("--memory-limit", default=shipped_memory_limit(),
                        help="engine.memory_limit for segments (default: config/local.yaml's; '' for none)")
    parser.add_argument("--out", default=os.path.join(REPO, "docs", "benchmarks.md"))
    parser.add_argument("--peers", default="duckdb,polars", help="peers to run beside segments ('' for none)")
    parser.add_argument("--jobs", default="full,same",
                        help="segments jobs: full (the default job, 8 tables), same (snapshots + migrations only, as the peers), "
                             "lines (same, with the orders step computed from every line, no month facts)")
    parser.add_argument("--months", type=int, default=24,
                        help="months of history generated (the size is the lines of 24 months; other lengths keep the customers)")
    args = parser.parse_args()
    global RUNNER
    RUNNER = Runner()

    binary = args.binary
    if not binary:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
        binary = os.path.join(REPO, "target", "release", "segments")
        target = os.environ.get("CARGO_TARGET_DIR")
        if target:
            binary = os.path.join(target, "release", "segments")
    binary = os.path.abspath(binary)
    import duckdb
    import polars

    os.makedirs(args.work, exist_ok=True)
    jobs = {"full": os.path.join(REPO, "jobs", "rfm_monthly.yaml"), "same": same_outputs_job(args.work),
            "lines": same_outputs_job(args.work, every_line=True)}
    jobs = {name: jobs[name] for name in args.jobs.split(",")}
    peers = os.path.join(HERE, "peers.py")
    results = []
    for size_text in args.sizes.split(","):
        lines = parse_size(size_text)
        customers = max(1, round(lines / LINES_PER_CUSTOMER))
        for variant in args.variants.split(","):
            name = f"{size_text}-{variant}" + ("" if args.months == 24 else f"-{args.months}m")
            data = os.path.join(args.work, f"data-{name}")
            marker = os.path.join(data, ".complete")
            if not os.path.exists(marker):
                shutil.rmtree(data, ignore_errors=True)
                print(f"generating {name} ({customers} customers, {args.months} months)…", flush=True)
                generated = run_measured([binary, "generate", "--customers", str(customers), "--months", str(args.months),
                                          "--start", month_after(LAST, 1 - args.months), "--out", data, "--no-events"]
                                         + VARIANTS[variant])
                open(marker, "w").close()
                print(f"  {generated['wall']:.1f}s", flush=True)
            con = duckdb.connect()
            actual, distinct = con.execute(
                f"SELECT COUNT(*), (SELECT COUNT(*) FROM (SELECT DISTINCT * FROM '{data}/transactions/*/*.parquet')) "
                f"FROM '{data}/transactions/*/*.parquet'"
            ).fetchone()
            size_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data) for f in fs)
            for task in args.tasks.split(","):
                first, last, published = TASKS[task]
                row = {"size": size_text, "variant": variant, "lines": actual, "duplicates": actual - distinct,
                       "bytes": size_bytes, "customers": customers, "task": task, "months": args.months}
                warehouses = {}
                for job_name, job in jobs.items():
                    warehouse = os.path.join(args.work, f"warehouse-{name}-{job_name}")
                    warehouses[job_name] = warehouse
                    shutil.rmtree(warehouse, ignore_errors=True)
                    config = os.path.join(args.work, f"config-{name}-{job_name}.yaml")
                    write_config(config, data, warehouse, args.memory_limit)
                    for period in published:
                        run_measured([binary, "run", "--job", job, "--config", config, "--period", period, "-q"], cwd=REPO)
                    if first == last:
                        command = [binary, "run", "--job", job, "--config", config, "--period", last]
                    else:
                        command = [binary, "backfill", "--job", job, "--config", config, "--from", first, "--to", last]
                    print(f"{name} {task}: segments ({JOBS[job_name]})…", flush=True)
                    row[f"segments_{job_name}"] = run_measured(command + ["-q"], cwd=REPO)
                warehouse = warehouses.get("same") or warehouses.get("lines") or warehouses["full"]
                for peer in ("duckdb", "polars"):
                    if peer not in args.peers.split(","):
                        row[peer] = None
                        row[f"{peer}_check"] = None
                        continue
                    out = os.path.join(args.work, f"{peer}-{name}")
                    shutil.rmtree(out, ignore_errors=True)
                    command = [sys.executable, peers, peer, data, out]
                    if peer == "polars" and actual >= STREAMING_FROM:
                        engine = ["streaming"]
                    else:
                        engine = []
                    for period in published:
                        run_measured(command + [period, period] + engine, may_fail=True)
                    print(f"{name} {task}: {peer}…", flush=True)
                    row[peer] = run_measured(command + [first, last] + engine, may_fail=True)
                    if "failed" in row[peer]:
                        print(f"  {peer} failed (exit {row[peer]['failed']})", flush=True)
                        row[f"{peer}_check"] = None
                        continue
                    differing = compare(warehouse, out, last)
                    row[f"{peer}_check"] = differing
                    if differing[0] or differing[1]:
                        print(f"  {peer} differs from segments: {differing[0]} segments, {differing[1]} movements", flush=True)
                results.append(row)
                print(json.dumps(row), flush=True)

    versions = (
        f"segments {git_revision()} (DataFusion 55.2, release build), DuckDB {duckdb.__version__}, "
        f"Polars {polars.__version__}, Python {platform.python_version()}"
    )
    write_report(args.out, results, versions, args.memory_limit)
    print(f"wrote {args.out}")


def write_report(path, results, versions, memory_limit):
    def cell(run):
        if run is None:
            return "not run"
        text = f"{run['wall']:.1f} s / {run['cpu']:.1f} s / {run['rss_mib']:.0f} MiB"
        if "failed" in run:
            return f"failed (exit {run['failed']}) after {text}"
        return text

    def ratio(row, peer, job="same"):
        mine = row.get(f"segments_{job}")
        if mine is None or row[peer] is None or "failed" in row[peer]:
            return "–"
        return f"{mine['wall'] / row[peer]['wall']:.2f}"

    pool = parse_bytes(memory_limit or "")

    def rss_over_pool(row):
        runs = [row[k] for k in ("segments_full", "segments_same", "segments_lines") if row.get(k)]
        run = max(runs, key=lambda r: r["rss_mib"]) if runs else None
        if pool is None or run is None:
            return "–"
        return f"{run['rss_mib'] * 2**20 / pool:.2f}"

    def same_result(row):
        checks = {p: row[p + "_check"] for p in ("duckdb", "polars") if row[p + "_check"] is not None}
        if not checks:
            return "not compared"
        if all(c[0] == 0 and c[1] == 0 for c in checks.values()):
            return "yes (" + ", ".join(checks) + ")"
        return "NO: " + json.dumps({p: c[:2] for p, c in checks.items()})

    out = [
        "# Benchmarks",
        "",
        "Made by `python3 bench/run.py` (see its docstring); numbers are from one run on this",
        "machine, every engine in its own process, side by side on the same files.",
        "",
        f"- Machine: {machine()}",
        f"- Versions: {versions}",
        f"- Date: {dt.date.today()}; segments memory limit: {memory_limit or 'none'}",
        "- Work: the default job (`jobs/rfm_monthly.yaml`): orders, RFM metrics and",
        "  tie-consistent scores, 11 segments, migrations against the previous period,",
        "  Parquet outputs. segments also checks and counts every input row, builds the",
        "  summaries, thresholds, rejects and store summary, and publishes with manifests.",
        "  The peers (`bench/peers.py`) write the snapshot and the migrations, dropping exact",
        "  duplicate lines as segments does (`SELECT DISTINCT`, `.unique()`).",
        "- Data: `segments generate`, 24 months. *real*: as generated by default, with what",
        "  real exports carry (exact duplicate lines, store lines arriving in the next",
        "  month's file, refunds, anonymous tickets); *clean*: `--clean`, none of the first two.",
        "- Tasks: *steady*: the month after a published one (the monthly CronJob; the",
        "  previous period is published first, unmeasured, by each engine); *first run*:",
        "  nothing published, the previous period is reclassified.",
        "",
        "- segments runs twice per task: *same outputs*, the default job writing what the",
        "  peers write (`outputs: [snapshots, migrations]`), the like-for-like comparison;",
        "  and *all tables*, the job as shipped (8 tables: also the summaries, store",
        "  summary, thresholds, definitions and rejects).",
        "",
        "Cells: wall / CPU (user + system) / peak RSS. Ratio = segments wall ÷ peer wall",
        "(below 1: segments is faster), one per segments job in the columns' order. Peak RSS ÷",
        "pool = the higher of segments' two peak RSS ÷ its `engine.memory_limit` (what a",
        "container needs beyond the pool: see the",
        "[memory rule](guides/deploying.md#memory-rule)).",
        "",
    ]
    ran = [job for job in ("same", "lines", "full") if any(row.get(f"segments_{job}") for row in results)]
    header = " | ".join(f"segments, {JOBS[job]}" for job in ran)
    out += [
        f"| data | variant | task | {header} | DuckDB | Polars | segments ÷ DuckDB | segments ÷ Polars | segments peak RSS ÷ pool | same result |",
        "|---|---|---|" + "---|" * len(ran) + "---|---|---|---|---|---|",
    ]
    for row in results:
        data = f"{row['lines']:,} lines ({row['duplicates']:,} exact duplicates), {row['customers']:,} customers, {row['bytes'] / 2**20:.0f} MiB"
        if row.get("months", 24) != 24:
            data += f", {row['months']} months"
        cells = " | ".join(cell(row.get(f"segments_{job}")) for job in ran)
        ratios = {peer: " / ".join(ratio(row, peer, job) for job in ran) for peer in ("duckdb", "polars")}
        out.append(
            f"| {data} | {row['variant']} | {row['task']} | {cells} "
            f"| {cell(row['duckdb'])} | {cell(row['polars'])} "
            f"| {ratios['duckdb']} | {ratios['polars']} "
            f"| {rss_over_pool(row)} | {same_result(row)} |"
        )
    # What duplicate (and late) lines cost segments: real ÷ clean, same size and task.
    pairs = {}
    for row in results:
        pairs.setdefault((row["size"], row["task"]), {})[row["variant"]] = row
    overhead = [(key, v) for key, v in pairs.items() if "real" in v and "clean" in v]
    if overhead:
        out += [
            "",
            "What the defects of real exports cost segments (wall, real ÷ clean, same size, task and job):",
            "",
            "| size | task | job | real | clean | real ÷ clean |",
            "|---|---|---|---|---|---|",
        ]
        for (size, task), v in overhead:
            for job_name, label in JOBS.items():
                key = f"segments_{job_name}"
                if not (v["real"].get(key) and v["clean"].get(key)):
                    continue
                real, clean = v["real"][key]["wall"], v["clean"][key]["wall"]
                out.append(f"| {size} | {task} | {label} | {real:.1f} s | {clean:.1f} s | {real / clean:.2f} |")
    out.append("")
    with open(path, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    main()
