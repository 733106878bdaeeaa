-- One row: customers on either side and how many change segment.
SELECT
    CAST(COUNT(*) AS BIGINT) AS customers,
    CAST(COUNT(*) FILTER (WHERE changed) AS BIGINT) AS changed
FROM diff_customers
