-- One row: the two periods side by side.
SELECT
    CAST($from_period AS VARCHAR) AS from_period,
    CAST($to_period AS VARCHAR) AS to_period,
    CAST(COUNT(from_segment) AS BIGINT) AS from_customers,
    CAST(COUNT(to_segment) AS BIGINT) AS to_customers,
    CAST(COUNT(*) FILTER (WHERE from_frequency > 0) AS BIGINT) AS from_active,
    CAST(COUNT(*) FILTER (WHERE to_frequency > 0) AS BIGINT) AS to_active,
    CAST(COUNT(*) FILTER (WHERE movement = 'new') AS BIGINT) AS new_customers,
    CAST(COUNT(*) FILTER (WHERE movement = 'churned') AS BIGINT) AS lost_customers,
    CAST(COUNT(*) FILTER (WHERE movement = 'reactivated') AS BIGINT) AS reactivated_customers,
    CAST(COUNT(*) FILTER (WHERE movement = 'removed') AS BIGINT) AS removed_customers,
    CAST(COUNT(*) FILTER (WHERE evolution = 'better') AS BIGINT) AS better,
    CAST(COUNT(*) FILTER (WHERE evolution = 'same') AS BIGINT) AS same,
    CAST(COUNT(*) FILTER (WHERE evolution = 'watch') AS BIGINT) AS watch
FROM customers
