-- One row per customer of either snapshot, with both sides, the movement and
-- the evolution (docs/design.md §3a applied to any two periods):
--   new          in the second universe only
--   removed      in the first universe only
--   churned      active in the first (frequency > 0), lost in the second:
--                no purchase in the second's window ("lost customers")
--   reactivated  lost in the first, active in the second
--   up/same/down segment rank better / equal / worse (1 = best)
-- evolution: better = up or reactivated; same = same (lost → lost included);
-- watch = down or churned; null for new and removed.
WITH joined AS (
    SELECT
        COALESCE(t.customer_id, f.customer_id) AS customer_id,
        f.segment AS from_segment,
        t.segment AS to_segment,
        f.segment_rank AS from_rank,
        t.segment_rank AS to_rank,
        f.frequency AS from_frequency,
        t.frequency AS to_frequency,
        f.monetary AS from_monetary,
        t.monetary AS to_monetary,
        CASE
            WHEN f.customer_id IS NULL THEN 'new'
            WHEN t.customer_id IS NULL THEN 'removed'
            WHEN f.frequency > 0 AND t.frequency = 0 THEN 'churned'
            WHEN f.frequency = 0 AND t.frequency > 0 THEN 'reactivated'
            WHEN t.segment_rank < f.segment_rank THEN 'up'
            WHEN t.segment_rank = f.segment_rank THEN 'same'
            ELSE 'down'
        END AS movement
    FROM from_snapshot f
    FULL OUTER JOIN to_snapshot t ON f.customer_id = t.customer_id
)
SELECT
    customer_id,
    CAST($from_period AS VARCHAR) AS from_period,
    CAST($to_period AS VARCHAR) AS to_period,
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
    END AS evolution,
    from_frequency,
    to_frequency,
    from_monetary,
    to_monetary
FROM joined
ORDER BY customer_id
