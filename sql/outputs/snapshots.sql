SELECT
    customer_id,
    CAST($as_of_date AS DATE) AS as_of_date,
    segment,
    segment_rank,
    r_score,
    f_score,
    m_score,
    rfm_code,
    recency_days,
    frequency,
    monetary,
    first_purchase_date,
    last_purchase_date
FROM classified
ORDER BY customer_id
