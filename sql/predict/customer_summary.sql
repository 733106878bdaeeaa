-- The per-customer summary the predictive models are fitted on (src/predict/),
-- from the job's orders step (registered as `predict_orders`: one row per
-- order with customer_id, order_date, amount, dated before period_end).
-- A purchase is an order with amount > 0; purchases on the same day count as
-- one "purchase day" (its value is their sum), as in the BTYD literature.
--   repeat_days  x   = purchase days - 1
--   t_x_days     t_x = last purchase day - first purchase day
--   t_days       T   = period_end - first purchase day (>= 1: a purchase on
--                      the last day of the period has been observed one day)
--   repeat_total     = total value of the purchase days after the first
--                      (exact decimal, so that the Gamma-Gamma input, its
--                      average, does not depend on summation order)
WITH purchase_days AS (
    SELECT customer_id, order_date, SUM(amount) AS day_value
    FROM predict_orders
    WHERE amount > 0
    GROUP BY customer_id, order_date
),
firsts AS (
    SELECT customer_id, MIN(order_date) AS first_day
    FROM purchase_days
    GROUP BY customer_id
)
SELECT
    d.customer_id,
    CAST(COUNT(*) - 1 AS BIGINT) AS repeat_days,
    CAST(CAST(MAX(d.order_date) AS INT) - CAST(f.first_day AS INT) AS BIGINT) AS t_x_days,
    CAST(CAST(CAST($period_end AS DATE) AS INT) - CAST(f.first_day AS INT) AS BIGINT) AS t_days,
    CAST(SUM(CASE WHEN d.order_date > f.first_day THEN d.day_value END) AS DECIMAL(38, 2)) AS repeat_total
FROM purchase_days d
JOIN firsts f ON d.customer_id = f.customer_id
GROUP BY d.customer_id, f.first_day
ORDER BY d.customer_id
