-- Always 3 metrics × 5 scores; a score nobody has gets 0 customers and null bounds.
WITH metrics AS (
    SELECT column1 AS metric, column2 AS metric_order
    FROM (VALUES ('recency', 1), ('frequency', 2), ('monetary', 3))
),
scores AS (
    SELECT CAST(column1 AS TINYINT) AS score FROM (VALUES (1), (2), (3), (4), (5))
),
observed AS (
    SELECT 'recency' AS metric, r_score AS score,
           CAST(MIN(recency_days) AS VARCHAR) AS min_value, CAST(MAX(recency_days) AS VARCHAR) AS max_value,
           CAST(MIN(recency_days) AS DOUBLE) AS min_value_num, CAST(MAX(recency_days) AS DOUBLE) AS max_value_num,
           COUNT(*) AS customers
    FROM classified WHERE r_score IS NOT NULL GROUP BY r_score
    UNION ALL
    SELECT 'frequency', f_score,
           CAST(MIN(frequency) AS VARCHAR), CAST(MAX(frequency) AS VARCHAR),
           CAST(MIN(frequency) AS DOUBLE), CAST(MAX(frequency) AS DOUBLE),
           COUNT(*)
    FROM classified WHERE f_score IS NOT NULL GROUP BY f_score
    UNION ALL
    SELECT 'monetary', m_score,
           CAST(MIN(monetary) AS VARCHAR), CAST(MAX(monetary) AS VARCHAR),
           CAST(MIN(monetary) AS DOUBLE), CAST(MAX(monetary) AS DOUBLE),
           COUNT(*)
    FROM classified WHERE m_score IS NOT NULL GROUP BY m_score
)
SELECT
    m.metric,
    s.score,
    o.min_value,
    o.max_value,
    o.min_value_num,
    o.max_value_num,
    COALESCE(o.customers, 0) AS customers
FROM metrics m
CROSS JOIN scores s
LEFT JOIN observed o ON o.metric = m.metric AND o.score = s.score
ORDER BY m.metric_order, s.score
