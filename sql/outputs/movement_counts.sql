-- For the run summary: customers per movement, in a fixed order.
SELECT movement, CAST(COUNT(*) AS BIGINT) AS customers
FROM transitions
GROUP BY movement
ORDER BY CASE movement
    WHEN 'new' THEN 1 WHEN 'up' THEN 2 WHEN 'same' THEN 3 WHEN 'down' THEN 4
    WHEN 'churned' THEN 5 WHEN 'reactivated' THEN 6 ELSE 7 END
