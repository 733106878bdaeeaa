-- input_checks.sql, and in the same pass the candidates for exact duplicate
-- lines: `repeated_lines` (inputs::seen) flags each usable line whose row
-- hash the pass has already seen, in one filter shared by every group and
-- partition, and gives their hashes and instants. Reads __hashed_transactions
-- (__counted_transactions with __line_hash, null for rejects). A grouping of
-- every line's hash, in a pass of its own, did this before.
SELECT
    __reason AS reason,
    CAST(date_part('year', ordered_date) * 12 + date_part('month', ordered_date) - 1 AS INT) AS month_index,
    CAST(COUNT(*) AS BIGINT) AS rows_read,
    CAST(COUNT(*) FILTER (WHERE customer_id IS NULL) AS BIGINT) AS anonymous_rows,
    CAST(COALESCE(SUM(amount), 0) AS DECIMAL(18, 2)) AS revenue,
    CAST(COALESCE(SUM(amount) FILTER (WHERE customer_id IS NOT NULL), 0) AS DECIMAL(18, 2)) AS identified_revenue,
    repeated_lines(__line_hash, ordered_at) AS repeated
FROM __hashed_transactions
GROUP BY 1, 2
