-- The orders of every customer at every store, for the store summary's home
-- stores (store_order_days.sql): one row per (customer, store, order) with
-- the local date of the order's first line at that store. An incremental job
-- keeps this per month beside its month facts and merges the months (the
-- earliest first date of each order), as `_facts/store-orders/`
-- (docs/guides/incremental.md); other runs group the lines.
SELECT customer_id, store_id, order_id, MIN(ordered_date) AS first_date
FROM transactions
WHERE customer_id IS NOT NULL
  AND store_id IS NOT NULL
  AND ordered_date < $period_end
GROUP BY customer_id, store_id, order_id
