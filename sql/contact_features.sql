-- One row per contact (docs/design.md §1): every customer of the universe (a
-- purchase before period_end) and everyone seen in `events` before
-- period_end, with the facts the audiences' rules read. "The last 30 days"
-- are as_of_date − 29 … as_of_date; "365 days" as_of_date − 364 … as_of_date.
-- A purchase is an order whose amount is > 0 (orders.sql).
WITH purchases AS (
    SELECT customer_id, order_id, order_date FROM orders WHERE amount > 0
),
-- The sold lines of purchases, with their category (from the product
-- catalog when the line has none).
purchase_lines AS (
    SELECT p.customer_id, p.order_id, p.order_date,
           COALESCE(t.category, pr.category) AS category,
           t.discount_amount
    FROM purchases p
    JOIN transactions t ON t.customer_id = p.customer_id AND t.order_id = p.order_id
    LEFT JOIN products pr ON pr.product_id = t.product_id
    WHERE t.ordered_date < $period_end
      AND t.amount > 0
),
category_purchases AS (
    SELECT customer_id, category, COUNT(DISTINCT order_id) AS purchases
    FROM purchase_lines
    WHERE category IS NOT NULL
      AND order_date > CAST($as_of_date AS DATE) - INTERVAL '365' DAY
    GROUP BY customer_id, category
),
-- The category bought in most purchases, at least 2 (ties: alphabetical).
repeat_categories AS (
    SELECT customer_id, category AS repeat_category
    FROM (
        SELECT customer_id, category,
               ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY purchases DESC, category) AS place
        FROM category_purchases
        WHERE purchases >= 2
    ) ranked
    WHERE place = 1
),
discounted AS (
    SELECT customer_id, CAST(COUNT(DISTINCT order_id) AS BIGINT) AS discounted_purchases
    FROM purchase_lines
    WHERE discount_amount > 0 AND order_date >= $window_start
    GROUP BY customer_id
),
-- Sales as local dates [starts, ends).
sales AS (
    SELECT name, kind, CAST(starts_at AS DATE) AS starts, CAST(ends_at AS DATE) AS ends
    FROM sales_calendar
),
last_summer_buyers AS (
    SELECT p.customer_id, MIN(s.name) AS sale
    FROM purchases p
    JOIN sales s ON p.order_date >= s.starts AND p.order_date < s.ends
    WHERE s.kind = 'summer_sales'
      AND EXTRACT(YEAR FROM s.starts) = EXTRACT(YEAR FROM CAST($period_start AS DATE)) - 1
    GROUP BY p.customer_id
),
-- The sales that overlap the period.
current_sales AS (
    SELECT name, starts, ends FROM sales WHERE starts < $period_end AND ends > $period_start
),
current_sales_buyers AS (
    SELECT p.customer_id, MIN(s.name) AS sale
    FROM purchases p
    JOIN current_sales s ON p.order_date >= s.starts AND p.order_date < s.ends
    GROUP BY p.customer_id
),
sales_abandoners AS (
    SELECT e.customer_id, MIN(s.name) AS sale
    FROM events e
    JOIN current_sales s ON e.occurred_date >= s.starts AND e.occurred_date < s.ends
    WHERE e.event_type = 'cart_abandon' AND e.occurred_date < $period_end
    GROUP BY e.customer_id
),
recent_activity AS (
    SELECT customer_id,
           CAST(COUNT(*) FILTER (WHERE event_type = 'visit') AS BIGINT) AS visits_30d,
           CAST(COUNT(*) FILTER (WHERE event_type = 'recommendation_click') AS BIGINT) AS recommendation_clicks_30d
    FROM events
    WHERE occurred_date > CAST($as_of_date AS DATE) - INTERVAL '30' DAY
      AND occurred_date < $period_end
    GROUP BY customer_id
),
recent_buyers AS (
    SELECT DISTINCT customer_id
    FROM purchases
    WHERE order_date > CAST($as_of_date AS DATE) - INTERVAL '30' DAY
),
contacts AS (
    SELECT customer_id FROM customer_metrics
    UNION
    SELECT customer_id FROM events WHERE customer_id IS NOT NULL AND occurred_date < $period_end
)
SELECT
    c.customer_id,
    s.r_score,
    s.f_score,
    s.m_score,
    COALESCE(s.frequency, 0) AS frequency,
    r.repeat_category,
    COALESCE(d.discounted_purchases, 0) AS discounted_purchases,
    ls.sale AS last_summer_sale,
    cs.sale AS current_sale,
    sa.sale AS abandoned_in_sale,
    COALESCE(a.visits_30d, 0) AS visits_30d,
    COALESCE(a.recommendation_clicks_30d, 0) AS recommendation_clicks_30d,
    rb.customer_id IS NOT NULL AS bought_in_30d
FROM contacts c
LEFT JOIN rfm_scores s ON s.customer_id = c.customer_id
LEFT JOIN repeat_categories r ON r.customer_id = c.customer_id
LEFT JOIN discounted d ON d.customer_id = c.customer_id
LEFT JOIN last_summer_buyers ls ON ls.customer_id = c.customer_id
LEFT JOIN current_sales_buyers cs ON cs.customer_id = c.customer_id
LEFT JOIN sales_abandoners sa ON sa.customer_id = c.customer_id
LEFT JOIN recent_activity a ON a.customer_id = c.customer_id
LEFT JOIN recent_buyers rb ON rb.customer_id = c.customer_id
