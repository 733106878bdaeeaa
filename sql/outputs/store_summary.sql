-- segment_summary per home store (DESIGN §5). A customer's home store is the
-- store of most of their orders dated before period_end (ties: the smallest
-- store_id), the same for both sides, so a customer's movement between
-- segments stays inside one store. Customers who never bought in a store
-- have a null store_id. Rows: every (store, segment) with customers now or
-- on the from side.
WITH store_orders AS (
    SELECT customer_id, store_id, COUNT(DISTINCT order_id) AS orders
    FROM transactions
    WHERE customer_id IS NOT NULL
      AND store_id IS NOT NULL
      AND ordered_date < $period_end
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
current_stores AS (
    SELECT
        h.store_id,
        c.segment,
        COUNT(*) AS customers,
        COUNT(*) FILTER (WHERE c.period_orders > 0) AS active_customers,
        SUM(c.period_revenue) AS revenue,
        SUM(c.period_orders) AS orders,
        AVG(CAST(c.frequency AS DOUBLE)) AS avg_frequency,
        AVG(CAST(c.recency_days AS DOUBLE)) AS avg_recency,
        SUM(c.monetary) AS monetary
    FROM classified c
    LEFT JOIN home_stores h ON h.customer_id = c.customer_id
    GROUP BY h.store_id, c.segment
),
previous_stores AS (
    SELECT h.store_id, p.segment, COUNT(*) AS customers
    FROM previous p
    LEFT JOIN home_stores h ON h.customer_id = p.customer_id
    GROUP BY h.store_id, p.segment
),
store_totals AS (
    SELECT store_id, SUM(customers) AS customers FROM current_stores GROUP BY store_id
),
cells AS (
    SELECT store_id, segment FROM current_stores
    UNION
    SELECT store_id, segment FROM previous_stores
)
SELECT
    k.store_id,
    d.segment,
    d.segment_rank,
    d.label,
    COALESCE(c.customers, 0) AS customers,
    CASE WHEN COALESCE(t.customers, 0) = 0 THEN 0.0
         ELSE CAST(COALESCE(c.customers, 0) AS DOUBLE) / CAST(t.customers AS DOUBLE) END AS share,
    COALESCE(c.active_customers, 0) AS active_customers,
    CAST(COALESCE(c.revenue, 0) AS DECIMAL(18, 2)) AS revenue,
    COALESCE(c.orders, 0) AS orders,
    CASE WHEN COALESCE(c.orders, 0) > 0
         THEN CAST(CAST(c.revenue AS DECIMAL(38, 10)) / CAST(c.orders AS DECIMAL(20, 0)) AS DECIMAL(18, 2)) END AS avg_basket,
    c.avg_frequency,
    c.avg_recency,
    CAST(COALESCE(c.monetary, 0) AS DECIMAL(18, 2)) AS monetary,
    COALESCE(p.customers, 0) AS previous_customers,
    COALESCE(c.customers, 0) - COALESCE(p.customers, 0) AS delta
FROM cells k
JOIN segment_definitions d ON d.segment = k.segment
LEFT JOIN current_stores c ON (c.store_id IS NOT DISTINCT FROM k.store_id) AND c.segment = k.segment
LEFT JOIN previous_stores p ON (p.store_id IS NOT DISTINCT FROM k.store_id) AND p.segment = k.segment
LEFT JOIN store_totals t ON t.store_id IS NOT DISTINCT FROM k.store_id
ORDER BY k.store_id NULLS LAST, d.segment_rank
