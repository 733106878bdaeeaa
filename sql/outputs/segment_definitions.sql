SELECT segment, segment_rank, label, description, rule, CAST($rule_hash AS VARCHAR) AS rule_hash
FROM segment_definitions
ORDER BY segment_rank
