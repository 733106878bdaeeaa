//! Potential score: a logistic regression estimating the probability that a
//! customer is in a target segment set `horizon` months later (filled in by a
//! later slice).
