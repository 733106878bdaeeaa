-- Run facts about the distinct usable transaction lines: rows, anonymous rows,
-- and the period's revenue with the share that has a customer (identification
-- rate). Run only when some lines may be exact duplicates; otherwise
-- input_checks.sql has counted the same facts in its pass.
SELECT
    CAST(COUNT(*) AS BIGINT) AS rows_read,
    CAST(COUNT(*) FILTER (WHERE customer_id IS NULL) AS BIGINT) AS anonymous_rows,
    CAST(COUNT(*) FILTER (WHERE ordered_date >= $period_start AND ordered_date < $period_end) AS BIGINT) AS period_rows,
    CAST(COALESCE(SUM(amount) FILTER (WHERE ordered_date >= $period_start AND ordered_date < $period_end), 0) AS DECIMAL(18, 2)) AS period_revenue,
    CAST(COALESCE(SUM(amount) FILTER (WHERE customer_id IS NOT NULL AND ordered_date >= $period_start AND ordered_date < $period_end), 0) AS DECIMAL(18, 2)) AS identified_revenue
FROM transactions
