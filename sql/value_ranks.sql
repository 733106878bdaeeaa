-- Spend ranks for value tiers (jobs/value_tiers.yaml). Over the active
-- customers (frequency > 0, n = active_customers):
--   spend_rank = RANK() OVER (ORDER BY monetary DESC)
-- so the biggest spender has rank 1 and tied customers share a rank (and a
-- tier). Customers with no purchase in the window keep null ranks.
-- The cut points come from the step `value_cut_points` (one row).
-- n comes from a one-row aggregate joined in (like rfm_scores.sql), not
-- COUNT(*) OVER (), which buffers every row.
WITH active_count AS (
    SELECT COUNT(*) AS active_customers FROM customer_metrics WHERE frequency > 0
),
active AS (
    SELECT
        m.*,
        n.active_customers,
        RANK() OVER (ORDER BY m.monetary DESC) AS spend_rank
    FROM customer_metrics m
    CROSS JOIN active_count n
    WHERE m.frequency > 0
)
SELECT
    a.customer_id, a.recency_days, a.frequency, a.monetary,
    a.first_purchase_date, a.last_purchase_date, a.period_orders, a.period_revenue,
    CAST(a.spend_rank AS BIGINT) AS spend_rank,
    CAST(a.active_customers AS BIGINT) AS active_customers,
    c.vip_percent, c.regular_percent
FROM active a
CROSS JOIN value_cut_points c
UNION ALL
SELECT
    m.customer_id, m.recency_days, m.frequency, m.monetary,
    m.first_purchase_date, m.last_purchase_date, m.period_orders, m.period_revenue,
    CAST(NULL AS BIGINT) AS spend_rank,
    CAST(NULL AS BIGINT) AS active_customers,
    c.vip_percent, c.regular_percent
FROM customer_metrics m
CROSS JOIN value_cut_points c
WHERE m.frequency = 0
