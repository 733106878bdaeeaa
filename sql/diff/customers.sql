-- `segments diff`: one row per customer of either side. `before` is the
-- published snapshot of the period (made by the rules recorded in its
-- segment_definitions), `after` the same period classified by the job's
-- working copy. Values and scores come from each side; `changed` is true when
-- the segment differs (a customer on one side only counts as changed).
SELECT
    COALESCE(a.customer_id, b.customer_id) AS customer_id,
    b.segment AS before_segment,
    a.segment AS after_segment,
    b.segment_rank AS before_rank,
    a.segment_rank AS after_rank,
    b.r_score AS before_r_score,
    b.f_score AS before_f_score,
    b.m_score AS before_m_score,
    a.r_score AS after_r_score,
    a.f_score AS after_f_score,
    a.m_score AS after_m_score,
    COALESCE(a.recency_days, b.recency_days) AS recency_days,
    COALESCE(a.frequency, b.frequency) AS frequency,
    COALESCE(a.monetary, b.monetary) AS monetary,
    b.segment IS DISTINCT FROM a.segment AS changed
FROM before_snapshot b
FULL OUTER JOIN after_snapshot a ON a.customer_id = b.customer_id
ORDER BY customer_id
