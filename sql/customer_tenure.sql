-- The customer metrics (customer_metrics.sql) plus how many days ago each
-- customer first bought, for rules on tenure such as "first purchase at most
-- 90 days ago" (jobs/lifecycle_groups.yaml).
SELECT
    *,
    CAST(CAST($as_of_date AS DATE) AS INT) - CAST(first_purchase_date AS INT) AS days_since_first_purchase
FROM customer_metrics
