-- The orders of every customer at every store, for the store summary's home
-- stores (store_summary.sql): one row per (customer, store, day) with the
-- number of distinct orders whose first line at that store is on that day.
-- An order counts at a store from its first line there, so the orders of a
-- customer at a store known by any date D are the rows dated before D: the
-- runs of one process (the periods of a backfill) compute this once, with
-- $period_end the end of their last period, and each takes its rows.
SELECT customer_id, store_id, first_date, CAST(COUNT(*) AS BIGINT) AS orders
FROM (
    SELECT customer_id, store_id, order_id, MIN(ordered_date) AS first_date
    FROM transactions
    WHERE customer_id IS NOT NULL
      AND store_id IS NOT NULL
      AND ordered_date < $period_end
    GROUP BY customer_id, store_id, order_id
) store_order_lines
GROUP BY customer_id, store_id, first_date
