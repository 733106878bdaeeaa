-- One row per contact: every customer of the `customers` input (contacts
-- who never bought included) and every buyer, with the attributes known by
-- the period's end and the RFM scores (null without a purchase in the
-- window). A buyer missing from the customer file is region 'unknown'.
SELECT
    COALESCE(c.customer_id, s.customer_id) AS customer_id,
    COALESCE(c.region, 'unknown') AS region,
    c.age_band,
    COALESCE(c.loyalty_member, FALSE) AS loyalty_member,
    s.customer_id IS NOT NULL AS bought,
    s.r_score,
    s.f_score,
    s.m_score
FROM customers c
FULL OUTER JOIN rfm_scores s ON s.customer_id = c.customer_id
