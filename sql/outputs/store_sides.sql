-- The customers of both sides of the store summary (store_summary.sql), each
-- with their home store: the store of most of their orders dated before
-- period_end (ties: the smallest store_id), the same for both sides, so a
-- customer's movement between segments stays inside one store; null for
-- customers who never bought in a store. The distinct orders per customer
-- and store come from __store_order_days (store_order_days.sql: computed
-- once for all the periods of a backfill).
--
-- This form joins the sides with the home stores by hash, the fastest in
-- memory. Under a memory limit store_sides_sorted.sql gives the same rows
-- by a sort, which spills: a hash join holds both sides of every customer
-- in memory and cannot spill.
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
-- Both sides in one pass: one join with the home stores (a join per side
-- would hold the home stores twice).
sides AS (
    SELECT customer_id, segment, period_orders, period_revenue, frequency, recency_days, monetary,
           1 AS is_current
    FROM classified
    UNION ALL
    SELECT customer_id, segment, CAST(0 AS BIGINT), CAST(0 AS DECIMAL(18, 2)), CAST(NULL AS BIGINT),
           CAST(NULL AS INT), CAST(0 AS DECIMAL(18, 2)), 0
    FROM previous
)
SELECT h.store_id AS home_store, s.segment, s.period_orders, s.period_revenue, s.frequency,
       s.recency_days, s.monetary, s.is_current
FROM sides s
LEFT JOIN home_stores h ON h.customer_id = s.customer_id
