-- One row per customer of the universe (customer_metrics) with the
-- attributes of the `customers` input as known by the period's end (the
-- latest row dated before it) and a value tier from the 12-month spend.
-- A customer missing from the customer file is region 'unknown', market
-- 'b2c', without an age band.
SELECT
    m.*,
    COALESCE(c.region, 'unknown') AS region,
    c.city,
    c.age_band,
    COALESCE(c.market, 'b2c') AS market,
    COALESCE(c.loyalty_member, FALSE) AS loyalty_member,
    CASE
        WHEN m.monetary >= 500 THEN 'high'
        WHEN m.monetary >= 100 THEN 'mid'
        WHEN m.frequency > 0 THEN 'low'
        ELSE 'none'
    END AS value_tier
FROM customer_metrics m
LEFT JOIN customers c ON c.customer_id = m.customer_id
