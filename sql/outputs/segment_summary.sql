-- One row per declared segment, empty ones included (docs/design.md §5).
WITH current_segments AS (
    SELECT
        segment,
        COUNT(*) AS customers,
        COUNT(*) FILTER (WHERE period_orders > 0) AS active_customers,
        SUM(period_revenue) AS revenue,
        SUM(period_orders) AS orders,
        AVG(CAST(frequency AS DOUBLE)) AS avg_frequency,
        AVG(CAST(recency_days AS DOUBLE)) AS avg_recency,
        SUM(monetary) AS monetary
    FROM classified
    GROUP BY segment
),
previous_segments AS (
    SELECT segment, COUNT(*) AS customers FROM previous GROUP BY segment
),
universe AS (
    SELECT COUNT(*) AS customers FROM classified
)
SELECT
    d.segment,
    d.segment_rank,
    d.label,
    COALESCE(c.customers, 0) AS customers,
    CASE WHEN u.customers = 0 THEN 0.0
         ELSE CAST(COALESCE(c.customers, 0) AS DOUBLE) / CAST(u.customers AS DOUBLE) END AS share,
    COALESCE(c.active_customers, 0) AS active_customers,
    CAST(COALESCE(c.revenue, 0) AS DECIMAL(18, 2)) AS revenue,
    COALESCE(c.orders, 0) AS orders,
    -- a cast to a smaller decimal scale rounds half away from zero
    CASE WHEN COALESCE(c.orders, 0) > 0
         THEN CAST(CAST(c.revenue AS DECIMAL(38, 10)) / CAST(c.orders AS DECIMAL(20, 0)) AS DECIMAL(18, 2)) END AS avg_basket,
    c.avg_frequency,
    c.avg_recency,
    CAST(COALESCE(c.monetary, 0) AS DECIMAL(18, 2)) AS monetary,
    COALESCE(p.customers, 0) AS previous_customers,
    COALESCE(c.customers, 0) - COALESCE(p.customers, 0) AS delta
FROM segment_definitions d
CROSS JOIN universe u
LEFT JOIN current_segments c ON c.segment = d.segment
LEFT JOIN previous_segments p ON p.segment = d.segment
ORDER BY d.segment_rank
