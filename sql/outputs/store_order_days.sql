-- The orders of every customer at every store, for the store summary's home
-- stores (store_summary.sql): one row per (customer, store, day) with the
-- number of distinct orders whose first line at that store is on that day
-- (__store_order_lines: store_order_lines.sql, or its month facts merged).
-- An order counts at a store from its first line there, so the orders of a
-- customer at a store known by any date D are the rows dated before D: the
-- runs of one process (the periods of a backfill) compute this once, with
-- $period_end the end of their last period, and each takes its rows.
SELECT customer_id, store_id, first_date, CAST(COUNT(*) AS BIGINT) AS orders
FROM __store_order_lines
GROUP BY customer_id, store_id, first_date
