"""The default job (jobs/rfm_monthly.yaml, docs/design.md §3) written as a DuckDB
script and as a Polars lazy query, the way their users would write it: read
the month folders, keep the lines dated before the end of the period (by
their timestamp, whatever their folder: a late line sits in the next month's
folder, so the folder cannot prune), drop exact duplicate lines, build orders, metrics, tie-consistent quantile scores and the
11 segments for the period and the previous one (read from the output folder
when an earlier run wrote it, as `segments` reads a published period), then
the migrations. Each writes `snapshot.parquet` and `migrations.parquet` for
every period to an output folder.

Run one engine on one data set (the benchmark harness times this process):

    python3 bench/peers.py duckdb|polars DATA_DIR OUT_DIR FIRST_PERIOD LAST_PERIOD [in-memory|streaming]
"""

import datetime as dt
import os
import sys

SEGMENTS = [
    # (name, rule over r, f) in rank order; lost = no purchase in the window.
    ("champions", lambda r, f: f"{r} = 5 AND {f} >= 4"),
    ("loyal", lambda r, f: f"{r} BETWEEN 3 AND 4 AND {f} >= 4"),
    ("potential_loyalists", lambda r, f: f"{r} >= 4 AND {f} BETWEEN 2 AND 3"),
    ("new_customers", lambda r, f: f"{r} = 5 AND {f} = 1"),
    ("promising", lambda r, f: f"{r} = 4 AND {f} = 1"),
    ("need_attention", lambda r, f: f"{r} = 3 AND {f} = 3"),
    ("about_to_sleep", lambda r, f: f"{r} = 3 AND {f} <= 2"),
    ("cant_lose", lambda r, f: f"{r} <= 2 AND {f} = 5"),
    ("at_risk", lambda r, f: f"{r} <= 2 AND {f} BETWEEN 3 AND 4"),
    ("hibernating", lambda r, f: f"{r} <= 2 AND {f} <= 2"),
]
RANKS = {name: i + 1 for i, (name, _) in enumerate(SEGMENTS)}
RANKS["lost"] = len(SEGMENTS) + 1


def month_start(period: str) -> dt.date:
    year, month = map(int, period.split("-"))
    return dt.date(year, month, 1)


def add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def periods(first: str, last: str):
    day, end = month_start(first), month_start(last)
    while day <= end:
        yield day.strftime("%Y-%m")
        day = add_months(day, 1)


def bounds(period: str):
    start = month_start(period)
    end = add_months(start, 1)
    return start, end, end - dt.timedelta(days=1), add_months(end, -12)


# ---------------------------------------------------------------------------
# DuckDB
# ---------------------------------------------------------------------------


def duckdb_snapshot_sql(glob: str, period: str) -> str:
    start, end, as_of, window_start = bounds(period)
    case = "\n".join(
        f"            WHEN {rule('r', 'f')} THEN '{name}'" for name, rule in SEGMENTS
    )
    return f"""
    WITH lines AS (
        SELECT DISTINCT customer_id, order_id, ordered_at, amount, quantity, product_id,
                        category, channel, store_id, discount_amount
        FROM read_parquet('{glob}', hive_partitioning = true)
        WHERE customer_id IS NOT NULL
          AND ordered_at < TIMESTAMPTZ '{end} 00:00:00+00'
    ),
    orders AS (
        SELECT customer_id, MIN(CAST(ordered_at AS DATE)) AS day, SUM(amount) AS amount
        FROM lines GROUP BY customer_id, order_id
    ),
    metrics AS (
        SELECT customer_id,
               COUNT(*) FILTER (WHERE amount > 0 AND day >= DATE '{window_start}') AS frequency,
               COALESCE(SUM(amount) FILTER (WHERE day >= DATE '{window_start}'), 0) AS monetary,
               DATE '{as_of}' - MAX(day) FILTER (WHERE amount > 0) AS recency_days
        FROM orders GROUP BY customer_id
        HAVING COUNT(*) FILTER (WHERE amount > 0) > 0
    ),
    scored AS (
        SELECT *,
               CASE WHEN frequency > 0 THEN 1 + (5 * (RANK() OVER (PARTITION BY frequency > 0 ORDER BY recency_days DESC) - 1))
                    // COUNT(*) OVER (PARTITION BY frequency > 0) END AS r,
               CASE WHEN frequency > 0 THEN 1 + (5 * (RANK() OVER (PARTITION BY frequency > 0 ORDER BY frequency) - 1))
                    // COUNT(*) OVER (PARTITION BY frequency > 0) END AS f,
               CASE WHEN frequency > 0 THEN 1 + (5 * (RANK() OVER (PARTITION BY frequency > 0 ORDER BY monetary) - 1))
                    // COUNT(*) OVER (PARTITION BY frequency > 0) END AS m
        FROM metrics
    )
    SELECT customer_id, recency_days, frequency, monetary, r, f, m,
        CASE WHEN frequency = 0 THEN 'lost'
{case}
        END AS segment
    FROM scored
    """


def run_duckdb(data: str, out: str, first: str, last: str) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET threads = {os.cpu_count()}")
    glob = os.path.join(data, "transactions", "*", "*.parquet")
    rank_case = " ".join(f"WHEN '{n}' THEN {r}" for n, r in RANKS.items())
    previous = None
    for period in periods(first, last):
        folder = os.path.join(out, f"period={period}")
        os.makedirs(folder, exist_ok=True)
        con.execute(f"CREATE OR REPLACE TEMP TABLE now AS {duckdb_snapshot_sql(glob, period)}")
        prev_period = add_months(month_start(period), -1).strftime("%Y-%m")
        published = os.path.join(out, f"period={prev_period}", "snapshot.parquet")
        if previous is None and os.path.exists(published):
            # Like `segments run` after a published period: read its snapshot.
            con.execute(f"CREATE OR REPLACE TEMP TABLE before AS SELECT * FROM '{published}'")
        elif previous is None:
            # Like `segments run` without a published previous period: reclassify it.
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE before AS {duckdb_snapshot_sql(glob, prev_period)}"
            )
        else:
            con.execute("CREATE OR REPLACE TEMP TABLE before AS SELECT * FROM previous_now")
        con.execute(
            f"COPY (SELECT * FROM now ORDER BY customer_id) TO '{folder}/snapshot.parquet' (FORMAT parquet, COMPRESSION zstd)"
        )
        con.execute(
            f"""COPY (
            SELECT COALESCE(n.customer_id, b.customer_id) AS customer_id,
                   b.segment AS from_segment, n.segment AS to_segment,
                   CASE WHEN b.customer_id IS NULL THEN 'new'
                        WHEN n.customer_id IS NULL THEN 'removed'
                        WHEN b.frequency > 0 AND n.frequency = 0 THEN 'churned'
                        WHEN b.frequency = 0 AND n.frequency > 0 THEN 'reactivated'
                        WHEN (CASE n.segment {rank_case} END) < (CASE b.segment {rank_case} END) THEN 'up'
                        WHEN n.segment = b.segment THEN 'same'
                        ELSE 'down' END AS movement
            FROM now n FULL JOIN before b ON n.customer_id = b.customer_id
            ORDER BY 1) TO '{folder}/migrations.parquet' (FORMAT parquet, COMPRESSION zstd)"""
        )
        con.execute("CREATE OR REPLACE TEMP TABLE previous_now AS SELECT * FROM now")
        previous = period


# ---------------------------------------------------------------------------
# Polars
# ---------------------------------------------------------------------------


def polars_snapshot(pl, data: str, period: str):
    start, end, as_of, window_start = bounds(period)
    lines = (
        pl.scan_parquet(
            os.path.join(data, "transactions", "**", "*.parquet"),
            hive_partitioning=True,
            hive_schema={"month": pl.String},
        )
        .filter(
            pl.col("customer_id").is_not_null()
            & (pl.col("ordered_at") < dt.datetime(end.year, end.month, end.day, tzinfo=dt.timezone.utc))
        )
        .drop("month")
        .unique()
    )
    orders = lines.group_by("customer_id", "order_id").agg(
        pl.col("ordered_at").min().dt.date().alias("day"), pl.col("amount").sum()
    )
    in_window = pl.col("day") >= window_start
    bought = pl.col("amount") > 0
    metrics = (
        orders.group_by("customer_id")
        .agg(
            (bought & in_window).sum().alias("frequency"),
            pl.col("amount").filter(in_window).sum().alias("monetary"),
            (pl.lit(as_of) - pl.col("day").filter(bought).max()).dt.total_days().alias("recency_days"),
            bought.sum().alias("purchases"),
        )
        .filter(pl.col("purchases") > 0)
        .drop("purchases")
    )
    active = pl.col("frequency") > 0
    n = active.sum()

    def score(column, descending=False):
        return pl.when(active).then(
            1 + (5 * (pl.col(column).rank("min", descending=descending).over(active) - 1)) // n
        )

    scored = metrics.with_columns(
        score("recency_days", descending=True).alias("r"),
        score("frequency").alias("f"),
        score("monetary").alias("m"),
    )
    r, f = pl.col("r"), pl.col("f")
    rules = {
        "champions": (r == 5) & (f >= 4),
        "loyal": r.is_between(3, 4) & (f >= 4),
        "potential_loyalists": (r >= 4) & f.is_between(2, 3),
        "new_customers": (r == 5) & (f == 1),
        "promising": (r == 4) & (f == 1),
        "need_attention": (r == 3) & (f == 3),
        "about_to_sleep": (r == 3) & (f <= 2),
        "cant_lose": (r <= 2) & (f == 5),
        "at_risk": (r <= 2) & f.is_between(3, 4),
        "hibernating": (r <= 2) & (f <= 2),
    }
    segment = pl.when(pl.col("frequency") == 0).then(pl.lit("lost"))
    for name, rule in rules.items():
        segment = segment.when(rule).then(pl.lit(name))
    return scored.with_columns(segment.otherwise(None).alias("segment"))


def run_polars(data: str, out: str, first: str, last: str, engine: str = "in-memory") -> None:
    """`engine`: Polars' in-memory engine, or "streaming" (what a Polars user
    picks when the data outgrows memory; the harness does from 50M lines)."""
    import polars as pl

    ranks = pl.DataFrame({"segment": list(RANKS), "rank": list(RANKS.values())})
    before = None
    for period in periods(first, last):
        folder = os.path.join(out, f"period={period}")
        os.makedirs(folder, exist_ok=True)
        now = polars_snapshot(pl, data, period).collect(engine=engine)
        prev_period = add_months(month_start(period), -1).strftime("%Y-%m")
        published = os.path.join(out, f"period={prev_period}", "snapshot.parquet")
        if before is None and os.path.exists(published):
            # Like `segments run` after a published period: read its snapshot.
            before = pl.read_parquet(published)
        elif before is None:
            before = polars_snapshot(pl, data, prev_period).collect(engine=engine)
        now.sort("customer_id").write_parquet(f"{folder}/snapshot.parquet", compression="zstd")
        joined = (
            now.join(ranks, on="segment", how="left")
            .join(
                before.join(ranks, on="segment", how="left"),
                on="customer_id",
                how="full",
                coalesce=True,
                suffix="_before",
            )
        )
        movement = (
            pl.when(pl.col("segment_before").is_null()).then(pl.lit("new"))
            .when(pl.col("segment").is_null()).then(pl.lit("removed"))
            .when((pl.col("frequency_before") > 0) & (pl.col("frequency") == 0)).then(pl.lit("churned"))
            .when((pl.col("frequency_before") == 0) & (pl.col("frequency") > 0)).then(pl.lit("reactivated"))
            .when(pl.col("rank") < pl.col("rank_before")).then(pl.lit("up"))
            .when(pl.col("rank") == pl.col("rank_before")).then(pl.lit("same"))
            .otherwise(pl.lit("down"))
        )
        joined.select(
            "customer_id",
            pl.col("segment_before").alias("from_segment"),
            pl.col("segment").alias("to_segment"),
            movement.alias("movement"),
        ).sort("customer_id").write_parquet(f"{folder}/migrations.parquet", compression="zstd")
        before = now


if __name__ == "__main__":
    engine, data, out, first, last = sys.argv[1:6]
    if engine == "duckdb":
        run_duckdb(data, out, first, last)
    else:
        run_polars(data, out, first, last, *sys.argv[6:7])
