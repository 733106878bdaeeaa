-- Tie-consistent 1–5 scores over active customers (frequency > 0):
--   score = 1 + floor(5 * (number of active customers with a strictly
--   "worse" value) / n), i.e. 1 + (5 * (RANK() - 1)) / n.
-- Recency is ranked by recency_days descending, so 5 = most recent.
-- Lost customers (no purchase in the window) keep null scores.
--
-- How, without sorting every customer three times: for each distinct value
-- of a metric, the number of active customers with a worse value is the
-- running total of customers per value, in order, minus its own (that is
-- RANK() - 1 of every customer holding the value). Only the distinct values
-- are sorted — a few hundred recencies and frequencies, fewer monetary
-- values than customers — and the customers get their rank by a hash join,
-- in parallel. n comes from a one-row aggregate joined in, never from
-- COUNT(*) OVER (), whose unbounded frame buffers every row.
WITH active AS (
    SELECT * FROM customer_metrics WHERE frequency > 0
),
active_count AS (
    SELECT CAST(COUNT(*) AS BIGINT) AS active_customers FROM active
),
recency_values AS (
    SELECT recency_days, COUNT(*) AS customers FROM active GROUP BY recency_days
),
recency_ranks AS (
    SELECT recency_days,
           CAST(SUM(customers) OVER (ORDER BY recency_days DESC ROWS UNBOUNDED PRECEDING) - customers AS BIGINT) AS worse
    FROM recency_values
),
frequency_values AS (
    SELECT frequency, COUNT(*) AS customers FROM active GROUP BY frequency
),
frequency_ranks AS (
    SELECT frequency,
           CAST(SUM(customers) OVER (ORDER BY frequency ROWS UNBOUNDED PRECEDING) - customers AS BIGINT) AS worse
    FROM frequency_values
),
monetary_values AS (
    SELECT monetary, COUNT(*) AS customers FROM active GROUP BY monetary
),
monetary_ranks AS (
    SELECT monetary,
           CAST(SUM(customers) OVER (ORDER BY monetary ROWS UNBOUNDED PRECEDING) - customers AS BIGINT) AS worse
    FROM monetary_values
),
scored AS (
    SELECT
        a.*,
        CAST(1 + (5 * r.worse) / c.active_customers AS TINYINT) AS r_score,
        CAST(1 + (5 * f.worse) / c.active_customers AS TINYINT) AS f_score,
        CAST(1 + (5 * m.worse) / c.active_customers AS TINYINT) AS m_score
    FROM active a
    CROSS JOIN active_count c
    JOIN recency_ranks r ON r.recency_days = a.recency_days
    JOIN frequency_ranks f ON f.frequency = a.frequency
    JOIN monetary_ranks m ON m.monetary = a.monetary
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
