-- One row per contact and audience (docs/design.md §5), sorted for deterministic output.
SELECT customer_id, audience, detail
FROM audience_members
ORDER BY customer_id, audience_rank
