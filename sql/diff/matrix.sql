-- The before × after matrix: non-empty cells, `(none)` for a customer on one
-- side only (e.g. input rows that arrived after the period was published).
WITH cells AS (
    SELECT
        COALESCE(before_segment, '(none)') AS before_segment,
        COALESCE(after_segment, '(none)') AS after_segment,
        MIN(before_rank) AS before_rank,
        MIN(after_rank) AS after_rank,
        COUNT(*) AS customers
    FROM diff_customers
    GROUP BY COALESCE(before_segment, '(none)'), COALESCE(after_segment, '(none)')
)
SELECT
    before_segment,
    after_segment,
    CAST(before_rank AS INT) AS before_rank,
    CAST(after_rank AS INT) AS after_rank,
    CAST(customers AS BIGINT) AS customers
FROM cells
ORDER BY before_rank NULLS FIRST, after_rank NULLS LAST
