-- One row per customer of the universe: customers with at least one purchase
-- (an order whose amount is > 0) before period_end. Nobody disappears: a
-- customer with no purchase in the window has frequency 0 (lost).
SELECT
    customer_id,
    CAST(COUNT(*) FILTER (WHERE amount > 0 AND order_date >= $window_start) AS BIGINT) AS frequency,
    CAST(COALESCE(SUM(amount) FILTER (WHERE order_date >= $window_start), 0) AS DECIMAL(18, 2)) AS monetary,
    CAST(CAST($as_of_date AS DATE) AS INT) - CAST(MAX(order_date) FILTER (WHERE amount > 0) AS INT) AS recency_days,
    MIN(order_date) FILTER (WHERE amount > 0) AS first_purchase_date,
    MAX(order_date) FILTER (WHERE amount > 0) AS last_purchase_date,
    -- what happened in the period itself, for the summaries
    CAST(COUNT(*) FILTER (WHERE amount > 0 AND order_date >= $period_start) AS BIGINT) AS period_orders,
    CAST(COALESCE(SUM(amount) FILTER (WHERE order_date >= $period_start), 0) AS DECIMAL(18, 2)) AS period_revenue
FROM orders
GROUP BY customer_id
HAVING COUNT(*) FILTER (WHERE amount > 0) > 0
