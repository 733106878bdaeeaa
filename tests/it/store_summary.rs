//! `store_summary` (docs/design.md §5): segment KPIs per home store, checked on
//! generated data against DuckDB computing the home stores and the period's
//! orders and revenue from the raw transactions, joined with the published
//! snapshots of both periods (their segments are checked elsewhere).

use std::collections::BTreeSet;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Decimal128Type, Float64Type, Int32Type, Int64Type};

use crate::common::{default_job, duckdb_lines, read_parquet, table_file};
use crate::jobs::generated;

#[test]
fn store_summary_matches_duckdb_on_generated_data() {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 1500, 24, "2024-01", 5);
    let warehouse = dir.path().join("warehouse");
    for period in ["2025-10", "2025-11"] {
        crate::common::run_job(dir.path(), &default_job(), &config, period);
    }
    let (ours, share_sums) = our_cells(&warehouse, "2025-11");
    // Shares are of the store's customers.
    for (store, sum) in &share_sums {
        assert!((sum - 1.0).abs() < 1e-9, "{store}: shares sum to {sum}");
    }
    let reference = duckdb_cells(dir.path(), &warehouse, "2025-11");
    let only_ours: Vec<_> = ours.difference(&reference).take(5).collect();
    let only_reference: Vec<_> = reference.difference(&ours).take(5).collect();
    assert!(
        only_ours.is_empty() && only_reference.is_empty(),
        "only in segments {only_ours:?}, only in DuckDB {only_reference:?}"
    );
    // The totals over stores are the segment summary's.
    let mut per_segment = std::collections::BTreeMap::<String, (i64, i64)>::new();
    for line in &ours {
        let fields: Vec<&str> = line.split('|').collect();
        let entry = per_segment.entry(fields[1].to_string()).or_default();
        entry.0 += fields[2].parse::<i64>().unwrap();
        entry.1 += fields[7].parse::<i64>().unwrap();
    }
    let summary = table_file(&warehouse, "rfm_monthly", "segment_summary", "2025-11");
    for batch in read_parquet(&summary) {
        let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
        let segments = column("segment");
        let customers = column("customers");
        let previous = column("previous_customers");
        for row in 0..batch.num_rows() {
            let segment = segments.as_string::<i32>().value(row);
            let expected = (
                customers.as_primitive::<Int64Type>().value(row),
                previous.as_primitive::<Int64Type>().value(row),
            );
            let got = per_segment.get(segment).copied().unwrap_or_default();
            assert_eq!(got, expected, "{segment}: store totals vs segment_summary");
        }
    }
}

/// The store summary of `period` as `store|segment|customers|active|revenue|
/// orders|monetary|previous` lines, and the sum of the shares per store.
fn our_cells(
    warehouse: &std::path::Path,
    period: &str,
) -> (BTreeSet<String>, std::collections::BTreeMap<String, f64>) {
    let file = table_file(warehouse, "rfm_monthly", "store_summary", period);
    let mut ours = BTreeSet::new();
    let mut share_sums = std::collections::BTreeMap::<String, f64>::new();
    for batch in read_parquet(&file) {
        let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
        let stores = column("store_id");
        let stores = stores.as_string::<i32>();
        let segments = column("segment");
        let segments = segments.as_string::<i32>();
        let ranks = column("segment_rank");
        let int64 = |name: &str| column(name).as_primitive::<Int64Type>().clone();
        let (customers, active, orders, previous, delta) = (
            int64("customers"),
            int64("active_customers"),
            int64("orders"),
            int64("previous_customers"),
            int64("delta"),
        );
        let revenue = column("revenue");
        let revenue = revenue.as_primitive::<Decimal128Type>();
        let monetary = column("monetary");
        let monetary = monetary.as_primitive::<Decimal128Type>();
        let share = column("share");
        let share = share.as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            let store = if stores.is_valid(row) {
                stores.value(row).to_string()
            } else {
                "-".to_string()
            };
            assert_eq!(customers.value(row) - previous.value(row), delta.value(row));
            *share_sums.entry(store.clone()).or_default() += share.value(row);
            assert!(ranks.as_primitive::<Int32Type>().value(row) >= 1);
            ours.insert(format!(
                "{store}|{}|{}|{}|{}|{}|{}|{}",
                segments.value(row),
                customers.value(row),
                active.value(row),
                revenue.value(row),
                orders.value(row),
                monetary.value(row),
                previous.value(row)
            ));
        }
    }
    (ours, share_sums)
}

/// The same lines computed by DuckDB from the raw transactions (each exact
/// duplicate line once, docs/design.md §7) and the published snapshots of `period` and the period before.
fn duckdb_cells(
    dir: &std::path::Path,
    warehouse: &std::path::Path,
    period: &str,
) -> BTreeSet<String> {
    let parsed: segments::model::period::Period = period.parse().unwrap();
    let (start, end, previous) = (parsed.start(), parsed.end(), parsed.previous());
    let d = dir.join("data").display().to_string();
    let w = warehouse.display();
    // Money as cents, to compare with the Decimal128 values.
    let sql = format!(
        r#"
SET TimeZone = 'UTC';
CREATE TEMP TABLE l AS SELECT customer_id, order_id, CAST(ordered_at AS DATE) AS day, amount, store_id
  FROM (SELECT DISTINCT * FROM read_parquet('{d}/transactions/*/*.parquet'))
  WHERE customer_id IS NOT NULL AND CAST(ordered_at AS DATE) < DATE '{end}';
CREATE TEMP TABLE o AS SELECT customer_id, order_id, MIN(day) AS day, SUM(amount) AS amount FROM l GROUP BY ALL;
CREATE TEMP TABLE home AS SELECT customer_id, first(store_id ORDER BY n DESC, store_id) AS store_id FROM (
  SELECT customer_id, store_id, COUNT(DISTINCT order_id) AS n FROM l WHERE store_id IS NOT NULL GROUP BY ALL) GROUP BY customer_id;
CREATE TEMP TABLE period AS SELECT customer_id,
  COUNT(*) FILTER (WHERE amount > 0) AS orders, SUM(amount) AS revenue
  FROM o WHERE day >= DATE '{start}' GROUP BY customer_id;
CREATE TEMP TABLE now AS SELECT customer_id, segment, monetary FROM '{w}/rfm_monthly/snapshots/period={period}/part-0.parquet';
CREATE TEMP TABLE before AS SELECT customer_id, segment FROM '{w}/rfm_monthly/snapshots/period={previous}/part-0.parquet';
CREATE TEMP TABLE cur AS SELECT COALESCE(h.store_id, '-') AS store, n.segment, COUNT(*) AS customers,
    COUNT(*) FILTER (WHERE COALESCE(p.orders, 0) > 0) AS active,
    CAST(COALESCE(SUM(p.revenue), 0) * 100 AS BIGINT) AS revenue, COALESCE(SUM(p.orders), 0) AS orders,
    CAST(SUM(n.monetary) * 100 AS BIGINT) AS monetary
  FROM now n LEFT JOIN home h USING (customer_id) LEFT JOIN period p USING (customer_id) GROUP BY ALL;
CREATE TEMP TABLE prev AS SELECT COALESCE(h.store_id, '-') AS store, b.segment, COUNT(*) AS customers
  FROM before b LEFT JOIN home h USING (customer_id) GROUP BY ALL;
SELECT concat_ws('|', store, segment, COALESCE(c.customers, 0), COALESCE(c.active, 0), COALESCE(c.revenue, 0),
                 COALESCE(c.orders, 0), COALESCE(c.monetary, 0), COALESCE(p.customers, 0))
FROM cur c FULL JOIN prev p USING (store, segment)
"#
    );
    let reference = duckdb_lines(&sql);
    assert!(reference.len() > 100, "{period}: {} cells", reference.len());
    reference
}

/// A backfill computes the store orders once, up to its last period, and
/// each period takes the orders known by its own end: every period's store
/// summary is still the one DuckDB computes for that period alone, with the
/// shared rows in memory or, under a memory limit, in the spill directory
/// (removed when the backfill ends).
#[test]
fn a_backfill_shares_the_store_orders_and_each_period_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 1500, 24, "2024-01", 5);
    let limited = dir.path().join("limited.yaml");
    std::fs::write(
        &limited,
        "warehouse: limited\ninputs:\n  transactions:\n    url: data/transactions/\n    format: parquet\n    partition_columns: [month]\nengine:\n  memory_limit: 64MiB\n  spill_dir: spill\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("spill")).unwrap();
    let job = default_job();
    for (config, warehouse) in [(&config, "warehouse"), (&limited, "limited")] {
        crate::common::segments_ok(
            dir.path(),
            &[
                "backfill",
                "--job",
                job.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
                "--from",
                "2025-08",
                "--to",
                "2025-11",
            ],
        );
        let warehouse = dir.path().join(warehouse);
        for period in ["2025-09", "2025-10", "2025-11"] {
            let (ours, _) = our_cells(&warehouse, period);
            let reference = duckdb_cells(dir.path(), &warehouse, period);
            let only_ours: Vec<_> = ours.difference(&reference).take(5).collect();
            let only_reference: Vec<_> = reference.difference(&ours).take(5).collect();
            assert!(
                only_ours.is_empty() && only_reference.is_empty(),
                "{}, {period}: only in segments {only_ours:?}, only in DuckDB {only_reference:?}",
                config.display()
            );
        }
    }
    crate::common::assert_spill_dir_empty(&dir.path().join("spill"));
}
