-- Readiness of the period's transactions (docs/guides/lifecycle.md): days
-- with usable lines in the period, and usable lines in the period and in the
-- previous one.
SELECT
    CAST(COUNT(DISTINCT CASE WHEN ordered_date >= $period_start AND ordered_date < $period_end THEN ordered_date END) AS BIGINT) AS days_with_data,
    CAST(COUNT(*) FILTER (WHERE ordered_date >= $period_start AND ordered_date < $period_end) AS BIGINT) AS period_rows,
    CAST(COUNT(*) FILTER (WHERE ordered_date >= $period_start - INTERVAL '1 month' AND ordered_date < $period_start) AS BIGINT) AS previous_rows
FROM transactions
