-- segment_summary per home store (DESIGN §5). A customer's home store is the
-- store of most of their orders dated before period_end (ties: the smallest
-- store_id), the same for both sides, so a customer's movement between
-- segments stays inside one store. Customers who never bought in a store
-- have a null store_id. Rows: every (store, segment) with customers now or
-- on the from side. The distinct orders per customer and store come from
-- __store_order_days (store_order_days.sql: computed once for all the
-- periods of a backfill).
WITH store_orders AS (
    SELECT customer_id, store_id, SUM(orders) AS orders
    FROM __store_order_days
    WHERE first_date < $period_end
    GROUP BY customer_id, store_id
),
home_stores AS (
    SELECT customer_id, store_id
    FROM (
        SELECT customer_id, store_id,
               ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY orders DESC, store_id) AS place
        FROM store_orders
    ) ranked
    WHERE place = 1
),
-- Both sides in one pass: one join with the home stores, one aggregate
-- (a join or an aggregate per side would hold the home stores twice).
sides AS (
    SELECT customer_id, segment, period_orders, period_revenue, frequency, recency_days, monetary,
           1 AS is_current
    FROM classified
    UNION ALL
    SELECT customer_id, segment, CAST(0 AS BIGINT), CAST(0 AS DECIMAL(18, 2)), CAST(NULL AS BIGINT),
           CAST(NULL AS INT), CAST(0 AS DECIMAL(18, 2)), 0
    FROM previous
),
cells AS (
    SELECT
        h.store_id,
        s.segment,
        COUNT(*) FILTER (WHERE s.is_current = 1) AS customers,
        COUNT(*) FILTER (WHERE s.is_current = 1 AND s.period_orders > 0) AS active_customers,
        SUM(s.period_revenue) AS revenue,
        SUM(s.period_orders) AS orders,
        AVG(CAST(s.frequency AS DOUBLE)) AS avg_frequency,
        AVG(CAST(s.recency_days AS DOUBLE)) AS avg_recency,
        SUM(s.monetary) AS monetary,
        COUNT(*) FILTER (WHERE s.is_current = 0) AS previous_customers
    FROM sides s
    LEFT JOIN home_stores h ON h.customer_id = s.customer_id
    GROUP BY h.store_id, s.segment
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
