-- The R×F grid of the report: customers per (recency score, frequency
-- score) and segment, over the period's snapshot. Customers without scores
-- (no purchase in the window) are not in the grid; the report counts them
-- apart. Several segments may share a cell when rules use more than R and F.
SELECT
    CAST(r_score AS BIGINT) AS r_score,
    CAST(f_score AS BIGINT) AS f_score,
    segment,
    CAST(MIN(segment_rank) AS BIGINT) AS segment_rank,
    CAST(COUNT(*) AS BIGINT) AS customers
FROM snapshots
WHERE r_score IS NOT NULL AND f_score IS NOT NULL
GROUP BY r_score, f_score, segment
ORDER BY r_score DESC, f_score, segment_rank, segment
