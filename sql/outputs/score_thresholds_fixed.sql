-- `scoring: fixed`: the job's configured bands (`score_bands`: both ends
-- included, null = open-ended) with the customers each score holds. Always
-- 3 metrics × 5 scores; unlike quantile scoring, an empty band keeps its
-- configured bounds.
WITH observed AS (
    SELECT 'recency' AS metric, r_score AS score, COUNT(*) AS customers
    FROM classified WHERE r_score IS NOT NULL GROUP BY r_score
    UNION ALL
    SELECT 'frequency', f_score, COUNT(*)
    FROM classified WHERE f_score IS NOT NULL GROUP BY f_score
    UNION ALL
    SELECT 'monetary', m_score, COUNT(*)
    FROM classified WHERE m_score IS NOT NULL GROUP BY m_score
)
SELECT
    b.metric,
    b.score,
    b.min_value,
    b.max_value,
    CAST(b.min_value AS DOUBLE) AS min_value_num,
    CAST(b.max_value AS DOUBLE) AS max_value_num,
    COALESCE(o.customers, 0) AS customers
FROM score_bands b
LEFT JOIN observed o ON o.metric = b.metric AND o.score = b.score
ORDER BY b.metric_order, b.score
