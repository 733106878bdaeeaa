-- For the run summary: customers per declared segment, in rank order.
SELECT d.segment, CAST(COUNT(c.customer_id) AS BIGINT) AS customers
FROM segment_definitions d
LEFT JOIN classified c ON c.segment = d.segment
GROUP BY d.segment, d.segment_rank
ORDER BY d.segment_rank
