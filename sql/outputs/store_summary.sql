-- segment_summary per home store (docs/design.md §5): every (store, segment) with
-- customers now or on the from side. The customers of both sides with
-- their home stores come from __store_sides (store_sides.sql, or
-- store_sides_sorted.sql under a memory limit).
WITH cells AS (
    SELECT
        s.home_store AS store_id,
        s.segment,
        COUNT(*) FILTER (WHERE s.is_current = 1) AS customers,
        COUNT(*) FILTER (WHERE s.is_current = 1 AND s.period_orders > 0) AS active_customers,
        SUM(s.period_revenue) AS revenue,
        SUM(s.period_orders) AS orders,
        AVG(CAST(s.frequency AS DOUBLE)) AS avg_frequency,
        AVG(CAST(s.recency_days AS DOUBLE)) AS avg_recency,
        SUM(s.monetary) AS monetary,
        COUNT(*) FILTER (WHERE s.is_current = 0) AS previous_customers
    FROM __store_sides s
    GROUP BY s.home_store, s.segment
),
with_totals AS (
    SELECT *, SUM(customers) OVER (PARTITION BY store_id) AS store_customers FROM cells
)
SELECT
    c.store_id,
    d.segment,
    d.segment_rank,
    d.label,
    c.customers,
    CASE WHEN c.store_customers = 0 THEN 0.0
         ELSE CAST(c.customers AS DOUBLE) / CAST(c.store_customers AS DOUBLE) END AS share,
    c.active_customers,
    CAST(c.revenue AS DECIMAL(18, 2)) AS revenue,
    c.orders,
    CASE WHEN c.orders > 0
         THEN CAST(CAST(c.revenue AS DECIMAL(38, 10)) / CAST(c.orders AS DECIMAL(20, 0)) AS DECIMAL(18, 2)) END AS avg_basket,
    c.avg_frequency,
    c.avg_recency,
    CAST(c.monetary AS DECIMAL(18, 2)) AS monetary,
    c.previous_customers,
    c.customers - c.previous_customers AS delta
FROM with_totals c
JOIN segment_definitions d ON d.segment = c.segment
ORDER BY c.store_id NULLS LAST, d.segment_rank
