SELECT segment, segment_rank, label, description, rule, CAST($rule_hash AS VARCHAR) AS rule_hash,
       label_en, label_fr, description_en, description_fr
FROM segment_definitions
ORDER BY segment_rank
