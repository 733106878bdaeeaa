SELECT
    customer_id,
    CAST($from_period AS VARCHAR) AS from_period,
    from_segment,
    to_segment,
    from_rank,
    to_rank,
    movement,
    CASE movement
        WHEN 'up' THEN 'better'
        WHEN 'reactivated' THEN 'better'
        WHEN 'same' THEN 'same'
        WHEN 'down' THEN 'watch'
        WHEN 'churned' THEN 'watch'
    END AS evolution
FROM transitions
ORDER BY customer_id
