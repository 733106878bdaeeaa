-- The transition matrix between the two periods: non-empty cells only,
-- `(new)` as the from side of new customers, `(removed)` as the to side of
-- removed ones; share_of_from = customers / customers of the row.
WITH cells AS (
    SELECT
        COALESCE(from_segment, '(new)') AS from_segment,
        COALESCE(to_segment, '(removed)') AS to_segment,
        MIN(from_rank) AS from_rank,
        MIN(to_rank) AS to_rank,
        CAST(COUNT(*) AS BIGINT) AS customers
    FROM customers
    GROUP BY COALESCE(from_segment, '(new)'), COALESCE(to_segment, '(removed)')
)
SELECT
    from_segment,
    to_segment,
    CAST(from_rank AS INT) AS from_rank,
    CAST(to_rank AS INT) AS to_rank,
    customers,
    CAST(customers AS DOUBLE) / SUM(customers) OVER (PARTITION BY from_segment) AS share_of_from
FROM cells
ORDER BY
    CASE WHEN from_segment = '(new)' THEN 0 ELSE 1 END, from_rank,
    CASE WHEN to_segment = '(removed)' THEN 1 ELSE 0 END, to_rank
