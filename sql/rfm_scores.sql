-- Tie-consistent 1–5 scores over active customers (frequency > 0):
--   score = 1 + floor(5 * (number of active customers with a strictly
--   "worse" value) / n), i.e. 1 + (5 * (RANK() - 1)) / n.
-- Recency is ranked by recency_days descending, so 5 = most recent.
-- Lost customers (no purchase in the window) keep null scores.
-- n comes from a one-row aggregate joined in, not COUNT(*) OVER (): an
-- unbounded window frame buffers every row, while RANK() over a sorted input
-- streams and the sort can spill to disk under a memory limit.
WITH active_count AS (
    SELECT COUNT(*) AS active_customers FROM customer_metrics WHERE frequency > 0
),
active AS (
    SELECT m.*, c.active_customers
    FROM customer_metrics m CROSS JOIN active_count c
    WHERE m.frequency > 0
),
scored AS (
    SELECT
        *,
        CAST(1 + (5 * (CAST(RANK() OVER (ORDER BY recency_days DESC) AS BIGINT) - 1)) / active_customers AS TINYINT) AS r_score,
        CAST(1 + (5 * (CAST(RANK() OVER (ORDER BY frequency) AS BIGINT) - 1)) / active_customers AS TINYINT) AS f_score,
        CAST(1 + (5 * (CAST(RANK() OVER (ORDER BY monetary) AS BIGINT) - 1)) / active_customers AS TINYINT) AS m_score
    FROM active
)
SELECT
    customer_id, recency_days, frequency, monetary, first_purchase_date, last_purchase_date,
    period_orders, period_revenue, r_score, f_score, m_score,
    CAST(r_score AS VARCHAR) || CAST(f_score AS VARCHAR) || CAST(m_score AS VARCHAR) AS rfm_code
FROM scored
UNION ALL
SELECT
    customer_id, recency_days, frequency, monetary, first_purchase_date, last_purchase_date,
    period_orders, period_revenue,
    CAST(NULL AS TINYINT) AS r_score, CAST(NULL AS TINYINT) AS f_score, CAST(NULL AS TINYINT) AS m_score,
    CAST(NULL AS VARCHAR) AS rfm_code
FROM customer_metrics
WHERE frequency = 0
