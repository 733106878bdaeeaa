-- Row accounting of the transactions input in one pass over the source rows
-- (`__counted_transactions`: each row with its reject reason, null when
-- usable; the months whose accounting is stored are left out), per reason
-- and per month of the local date (month_index = year * 12 + month - 1; null
-- for undatable rows): rows, anonymous rows, revenue and
-- the revenue that has a customer (identification rate). A run takes its
-- period's month and the totals; a backfill computes this once for all of its
-- periods. Exact duplicate lines are still counted here; when the run finds
-- some, input_stats.sql recounts the period over the distinct lines.
SELECT
    __reason AS reason,
    CAST(date_part('year', ordered_date) * 12 + date_part('month', ordered_date) - 1 AS INT) AS month_index,
    CAST(COUNT(*) AS BIGINT) AS rows_read,
    CAST(COUNT(*) FILTER (WHERE customer_id IS NULL) AS BIGINT) AS anonymous_rows,
    CAST(COALESCE(SUM(amount), 0) AS DECIMAL(18, 2)) AS revenue,
    CAST(COALESCE(SUM(amount) FILTER (WHERE customer_id IS NOT NULL), 0) AS DECIMAL(18, 2)) AS identified_revenue
FROM __counted_transactions
GROUP BY 1, 2
