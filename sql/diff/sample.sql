-- A sample of changed customers that covers every changed cell of the
-- matrix: the first customer (by id) of each cell, then the second, and so
-- on; the caller keeps the first N rows.
WITH numbered AS (
    SELECT
        *,
        ROW_NUMBER() OVER (
            PARTITION BY before_segment, after_segment ORDER BY customer_id
        ) AS nth
    FROM diff_customers
    WHERE changed
)
SELECT
    customer_id, before_segment, after_segment,
    recency_days, frequency, monetary,
    before_r_score, before_f_score, before_m_score,
    after_r_score, after_f_score, after_m_score
FROM numbered
ORDER BY nth, before_rank NULLS FIRST, after_rank NULLS LAST, customer_id
