-- Customers per segment before (published) and after (working copy), with
-- the delta. Every segment of the working copy is listed (empty ones too),
-- then segments found only in the published snapshot (removed or renamed).
WITH declared AS (
    SELECT segment, segment_rank FROM segment_definitions
),
published AS (
    SELECT before_segment AS segment, MIN(before_rank) AS before_rank
    FROM diff_customers
    WHERE before_segment IS NOT NULL
    GROUP BY before_segment
),
listed AS (
    SELECT
        COALESCE(d.segment, p.segment) AS segment,
        d.segment_rank AS after_rank,
        p.before_rank
    FROM declared d
    FULL OUTER JOIN published p ON p.segment = d.segment
),
before_counts AS (
    SELECT before_segment AS segment, COUNT(*) AS customers
    FROM diff_customers WHERE before_segment IS NOT NULL GROUP BY before_segment
),
after_counts AS (
    SELECT after_segment AS segment, COUNT(*) AS customers
    FROM diff_customers WHERE after_segment IS NOT NULL GROUP BY after_segment
)
SELECT
    l.segment,
    CAST(l.before_rank AS INT) AS before_rank,
    CAST(l.after_rank AS INT) AS after_rank,
    CAST(COALESCE(bc.customers, 0) AS BIGINT) AS before_customers,
    CAST(COALESCE(ac.customers, 0) AS BIGINT) AS after_customers,
    CAST(COALESCE(ac.customers, 0) - COALESCE(bc.customers, 0) AS BIGINT) AS delta
FROM listed l
LEFT JOIN before_counts bc ON bc.segment = l.segment
LEFT JOIN after_counts ac ON ac.segment = l.segment
ORDER BY after_rank NULLS LAST, before_rank, segment
