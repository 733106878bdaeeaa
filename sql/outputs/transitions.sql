-- Every customer of the universe of P or of P−1, with both sides (docs/design.md §3a).
-- "Lost" means no purchase in the window: frequency = 0.
SELECT
    COALESCE(c.customer_id, p.customer_id) AS customer_id,
    p.segment AS from_segment,
    c.segment AS to_segment,
    p.segment_rank AS from_rank,
    c.segment_rank AS to_rank,
    CASE
        WHEN p.customer_id IS NULL THEN 'new'
        WHEN c.customer_id IS NULL THEN 'removed'
        WHEN p.frequency > 0 AND c.frequency = 0 THEN 'churned'
        WHEN p.frequency = 0 AND c.frequency > 0 THEN 'reactivated'
        WHEN c.segment_rank < p.segment_rank THEN 'up'
        WHEN c.segment_rank = p.segment_rank THEN 'same'
        ELSE 'down'
    END AS movement,
    -- the window monetary of P, of P−1 for removed customers
    CASE WHEN c.customer_id IS NULL THEN p.monetary ELSE c.monetary END AS monetary
FROM classified c
FULL OUTER JOIN previous p ON c.customer_id = p.customer_id
