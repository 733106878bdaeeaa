-- Non-empty cells only; `(new)` first, `(removed)` last.
WITH cells AS (
    SELECT
        COALESCE(from_segment, '(new)') AS from_segment,
        COALESCE(to_segment, '(removed)') AS to_segment,
        from_rank,
        to_rank,
        COUNT(*) AS customers,
        SUM(monetary) AS monetary
    FROM transitions
    GROUP BY from_segment, to_segment, from_rank, to_rank
)
SELECT
    from_segment,
    to_segment,
    from_rank,
    to_rank,
    customers,
    CAST(customers AS DOUBLE) / CAST(SUM(customers) OVER (PARTITION BY from_segment) AS DOUBLE) AS share_of_from,
    CAST(monetary AS DECIMAL(18, 2)) AS monetary
FROM cells
ORDER BY COALESCE(from_rank, 0), COALESCE(to_rank, 2147483647)
