-- Orders known by the end of the period (docs/design.md §3): the lines of one
-- (customer_id, order_id) dated before period_end. An order's date is the
-- local date of its earliest line; its amount nets refund lines off.
-- Anonymous lines (no customer_id) count in revenue, never in a customer's scores.
SELECT
    customer_id,
    order_id,
    MIN(ordered_date) AS order_date,
    CAST(SUM(amount) AS DECIMAL(18, 2)) AS amount
FROM transactions
WHERE customer_id IS NOT NULL
  AND ordered_date < $period_end
GROUP BY customer_id, order_id
