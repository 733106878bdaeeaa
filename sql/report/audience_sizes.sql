-- Audience sizes of the report: distinct contacts per audience of the
-- period's `audiences` table (a contact may be in several audiences, and in
-- one audience several times with different details).
SELECT
    audience,
    CAST(COUNT(DISTINCT customer_id) AS BIGINT) AS customers
FROM audiences
GROUP BY audience
ORDER BY audience
