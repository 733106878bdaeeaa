-- The rows of store_sides.sql (read it first), computed by a sort instead
-- of a hash join, for runs under a memory limit: a sort spills, where the
-- join would hold both sides of every customer in memory. About 15% more
-- CPU for a run without a limit (measured on 9.2M lines), hence two forms;
-- the tests check that both give the same table.
WITH store_orders AS (
    SELECT customer_id, store_id, SUM(orders) AS orders
    FROM __store_order_days
    WHERE first_date < $period_end
    GROUP BY customer_id, store_id
),
-- Every row of a customer: their orders per store and their classification
-- on each side. Sorted by customer, most orders first, then the smallest
-- store_id, the first row holds the home store; side rows have no orders
-- and sort last, so a customer with no store orders gets a null store.
customer_rows AS (
    SELECT customer_id, store_id, orders,
           CAST(NULL AS VARCHAR) AS segment, CAST(NULL AS BIGINT) AS period_orders,
           CAST(NULL AS DECIMAL(18, 2)) AS period_revenue, CAST(NULL AS BIGINT) AS frequency,
           CAST(NULL AS INT) AS recency_days, CAST(NULL AS DECIMAL(18, 2)) AS monetary,
           CAST(NULL AS INT) AS is_current
    FROM store_orders
    UNION ALL
    SELECT customer_id, CAST(NULL AS VARCHAR), CAST(NULL AS BIGINT),
           segment, period_orders, period_revenue, frequency, recency_days, monetary, 1
    FROM classified
    UNION ALL
    SELECT customer_id, CAST(NULL AS VARCHAR), CAST(NULL AS BIGINT),
           segment, CAST(0 AS BIGINT), CAST(0 AS DECIMAL(18, 2)), CAST(NULL AS BIGINT),
           CAST(NULL AS INT), CAST(0 AS DECIMAL(18, 2)), 0
    FROM previous
)
SELECT home_store, segment, period_orders, period_revenue, frequency, recency_days, monetary,
       is_current
FROM (
    SELECT *,
           FIRST_VALUE(store_id) OVER (
               PARTITION BY customer_id ORDER BY orders DESC NULLS LAST, store_id ASC NULLS LAST
           ) AS home_store
    FROM customer_rows
) placed
WHERE is_current IS NOT NULL
