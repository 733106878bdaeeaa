-- For the run summary: contacts per declared audience, in rank order.
SELECT d.segment, CAST(COUNT(m.customer_id) AS BIGINT) AS customers
FROM segment_definitions d
LEFT JOIN audience_members m ON m.audience = d.segment
GROUP BY d.segment, d.segment_rank
ORDER BY d.segment_rank
