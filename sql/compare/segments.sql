-- Customers per segment in each period, with the delta. Every declared
-- segment is listed (empty ones too), plus any segment found only in a
-- snapshot (published with other rules), in rank order.
WITH observed AS (
    SELECT segment, MIN(segment_rank) AS segment_rank
    FROM (
        SELECT segment, segment_rank FROM from_snapshot
        UNION ALL
        SELECT segment, segment_rank FROM to_snapshot
    ) s
    GROUP BY segment
),
listed AS (
    SELECT
        COALESCE(d.segment, o.segment) AS segment,
        COALESCE(d.segment_rank, o.segment_rank) AS segment_rank
    FROM segment_definitions d
    FULL OUTER JOIN observed o ON d.segment = o.segment
),
from_counts AS (
    SELECT segment, COUNT(*) AS customers FROM from_snapshot GROUP BY segment
),
to_counts AS (
    SELECT segment, COUNT(*) AS customers FROM to_snapshot GROUP BY segment
),
counted AS (
    SELECT
        l.segment,
        l.segment_rank,
        CAST(COALESCE(f.customers, 0) AS BIGINT) AS from_customers,
        CAST(COALESCE(t.customers, 0) AS BIGINT) AS to_customers
    FROM listed l
    LEFT JOIN from_counts f ON f.segment = l.segment
    LEFT JOIN to_counts t ON t.segment = l.segment
),
shared AS (
    SELECT
        *,
        SUM(from_customers) OVER () AS from_total,
        SUM(to_customers) OVER () AS to_total
    FROM counted
)
SELECT
    segment,
    CAST(segment_rank AS INT) AS segment_rank,
    from_customers,
    to_customers,
    to_customers - from_customers AS delta,
    CASE WHEN from_total > 0 THEN CAST(from_customers AS DOUBLE) / from_total ELSE 0.0 END AS from_share,
    CASE WHEN to_total > 0 THEN CAST(to_customers AS DOUBLE) / to_total ELSE 0.0 END AS to_share
FROM shared
ORDER BY segment_rank, segment
