-- `segments why`: the orders of one customer known by the end of the period,
-- built like sql/orders.sql (dated by the earliest line's local date, refund
-- lines netted off). The caller marks those in the window and the purchases.
SELECT
    order_id,
    MIN(ordered_date) AS order_date,
    CAST(SUM(amount) AS DECIMAL(18, 2)) AS amount,
    CAST(COUNT(*) AS BIGINT) AS lines
FROM transactions
WHERE customer_id = $customer_id
  AND ordered_date < $period_end
GROUP BY order_id
ORDER BY order_date, order_id
