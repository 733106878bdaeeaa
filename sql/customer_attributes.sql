-- One row per active customer (a purchase in the window) with their main
-- attributes over the window: the channel, the category and the store of
-- most of their purchases (ties: the first in alphabetical order), and how
-- many channels they bought in. A purchase is an order whose amount is > 0
-- (orders.sql); an order counts once per category it has a sold line in.
WITH purchase_lines AS (
    SELECT o.customer_id, o.order_id, t.channel, t.category, t.store_id
    FROM orders o
    JOIN transactions t ON t.customer_id = o.customer_id AND t.order_id = o.order_id
    WHERE o.amount > 0
      AND o.order_date >= $window_start
      AND t.ordered_date < $period_end
      AND t.amount > 0
),
channels AS (
    SELECT customer_id, channel AS value, COUNT(DISTINCT order_id) AS purchases
    FROM purchase_lines WHERE channel IS NOT NULL GROUP BY customer_id, channel
),
categories AS (
    SELECT customer_id, category AS value, COUNT(DISTINCT order_id) AS purchases
    FROM purchase_lines WHERE category IS NOT NULL GROUP BY customer_id, category
),
stores AS (
    SELECT customer_id, store_id AS value, COUNT(DISTINCT order_id) AS purchases
    FROM purchase_lines WHERE store_id IS NOT NULL GROUP BY customer_id, store_id
),
ranked AS (
    SELECT 'channel' AS attribute, customer_id, value,
           ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY purchases DESC, value) AS place
    FROM channels
    UNION ALL
    SELECT 'category', customer_id, value,
           ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY purchases DESC, value)
    FROM categories
    UNION ALL
    SELECT 'store', customer_id, value,
           ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY purchases DESC, value)
    FROM stores
),
main AS (
    SELECT customer_id,
           MAX(value) FILTER (WHERE attribute = 'channel') AS main_channel,
           MAX(value) FILTER (WHERE attribute = 'category') AS main_category,
           MAX(value) FILTER (WHERE attribute = 'store') AS home_store
    FROM ranked
    WHERE place = 1
    GROUP BY customer_id
),
channel_counts AS (
    SELECT customer_id, CAST(COUNT(*) AS BIGINT) AS channels FROM channels GROUP BY customer_id
)
SELECT
    m.customer_id,
    a.main_channel,
    a.main_category,
    a.home_store,
    COALESCE(c.channels, 0) AS channels
FROM customer_metrics m
LEFT JOIN main a ON a.customer_id = m.customer_id
LEFT JOIN channel_counts c ON c.customer_id = m.customer_id
WHERE m.frequency > 0
