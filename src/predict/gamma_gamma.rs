//! The Gamma-Gamma model of spend per order (Fader, Hardie & Lee 2005, "RFM
//! and CLV: using iso-value curves for customer base analysis", JMR 42(4);
//! the note "The Gamma-Gamma model of monetary value", Fader & Hardie 2013).
//!
//! Each order of a customer is worth z ~ Gamma(p, ν), with ν ~ Gamma(q, γ)
//! across customers. It is fitted on repeat customers' (x ≥ 1) number of
//! repeat orders x and their average value m̄; as in the paper, it assumes a
//! customer's spend per order does not depend on how often they buy. The
//! expected average order value shrinks a customer's own average towards the
//! population mean γp/(q−1), more so the fewer orders they made.

use super::PredictError;
use super::optim::minimize;
use super::special::{digamma, ln_gamma};

/// One repeat customer: repeat orders and their average value (> 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spend {
    pub x: u32,
    pub mean_value: f64,
}

/// Fitted parameters (γ is called `v` in the `lifetimes` package).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub p: f64,
    pub q: f64,
    pub gamma: f64,
}

/// A maximum-likelihood fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub params: Params,
    pub log_likelihood: f64,
    pub customers: usize,
    pub iterations: usize,
}

impl Params {
    /// Log-likelihood of one customer's average (the density of m̄ given x).
    pub fn log_likelihood(&self, s: &Spend) -> f64 {
        self.ll_and_grad(s).0
    }

    /// The terms that depend on x only (cached per distinct x by the fit):
    /// ln Γ(px+q) − ln Γ(px) − ln Γ(q), ψ(px+q), ψ(px).
    fn x_terms(&self, x: u32) -> [f64; 3] {
        let px = self.p * f64::from(x);
        [
            ln_gamma(px + self.q) - ln_gamma(px) - ln_gamma(self.q),
            digamma(px + self.q),
            digamma(px),
        ]
    }

    fn ll_and_grad(&self, s: &Spend) -> (f64, [f64; 3]) {
        self.ll_and_grad_with(s, &self.x_terms(s.x), digamma(self.q))
    }

    fn ll_and_grad_with(&self, s: &Spend, k: &[f64; 3], psi_q: f64) -> (f64, [f64; 3]) {
        let (p, q, g) = (self.p, self.q, self.gamma);
        let x = f64::from(s.x);
        let m = s.mean_value;
        let px = p * x;
        let (ln_m, ln_x, ln_g) = (m.ln(), x.ln(), g.ln());
        let ln_gm = (g + m * x).ln();
        let ll = k[0] + q * ln_g + (px - 1.0) * ln_m + px * ln_x - (px + q) * ln_gm;
        let d_p = x * (k[1] - k[2] + ln_m + ln_x - ln_gm);
        let d_q = k[1] - psi_q + ln_g - ln_gm;
        let d_g = q / g - (px + q) / (g + m * x);
        (ll, [d_p, d_q, d_g])
    }

    /// The population's mean order value γp/(q−1); `None` when q ≤ 1 (the
    /// fitted distribution has no finite mean).
    pub fn population_mean(&self) -> Option<f64> {
        (self.q > 1.0).then(|| self.gamma * self.p / (self.q - 1.0))
    }

    /// Expected value of a customer's future orders given x repeat orders of
    /// average `mean_value` (x = 0: the population mean).
    pub fn expected_order_value(&self, x: u32, mean_value: f64) -> Option<f64> {
        if self.q <= 1.0 {
            return None;
        }
        if x == 0 {
            return self.population_mean();
        }
        let px = self.p * f64::from(x);
        Some(self.p * (self.gamma + f64::from(x) * mean_value) / (px + self.q - 1.0))
    }
}

/// Fits the model by maximum likelihood on repeat customers.
pub fn fit(data: &[Spend]) -> Result<Fit, PredictError> {
    if data.len() < 2 {
        return Err(PredictError::NoData {
            model: "Gamma-Gamma",
            detail: format!(
                "{} repeat customer(s) with a positive average order value",
                data.len()
            ),
        });
    }
    for (index, s) in data.iter().enumerate() {
        if s.x == 0 || !(s.mean_value.is_finite() && s.mean_value > 0.0) {
            return Err(PredictError::InvalidInput {
                model: "Gamma-Gamma",
                index,
                detail: format!(
                    "x = {}, average value {} (need x ≥ 1 and a positive average)",
                    s.x, s.mean_value
                ),
            });
        }
    }
    let n = data.len() as f64;
    let mean = data.iter().map(|s| s.mean_value).sum::<f64>() / n;
    let max_x = data.iter().map(|s| s.x).max().unwrap_or(0);
    let objective = |theta: &[f64]| -> Option<(f64, Vec<f64>)> {
        let p = Params {
            p: theta[0].exp(),
            q: theta[1].exp(),
            gamma: theta[2].exp(),
        };
        if ![p.p, p.q, p.gamma]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
        {
            return None;
        }
        let mut ll = 0.0;
        let mut grad = [0.0; 3];
        let psi_q = digamma(p.q);
        let mut cache: Vec<Option<[f64; 3]>> = vec![None; max_x as usize + 1];
        for s in data {
            let k = cache[s.x as usize].get_or_insert_with(|| p.x_terms(s.x));
            let (l, g) = p.ll_and_grad_with(s, k, psi_q);
            ll += l;
            for (total, d) in grad.iter_mut().zip(g) {
                *total += d;
            }
        }
        let values = [p.p, p.q, p.gamma];
        let g = grad.iter().zip(values).map(|(d, v)| -d * v / n).collect();
        Some((-ll / n, g))
    };
    // Start from p = 1, q = 2, γ = the mean (the population mean γp/(q−1)).
    let start = [0.0, 2f64.ln(), mean.ln()];
    let m = minimize("Gamma-Gamma", &start, objective)?;
    Ok(Fit {
        params: Params {
            p: m.x[0].exp(),
            q: m.x[1].exp(),
            gamma: m.x[2].exp(),
        },
        log_likelihood: -m.value * n,
        customers: data.len(),
        iterations: m.iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CDNOW: Params = Params {
        p: 6.25,
        q: 3.74,
        gamma: 15.44,
    };

    #[test]
    fn gradient_matches_finite_differences() {
        for s in [
            Spend {
                x: 1,
                mean_value: 12.0,
            },
            Spend {
                x: 6,
                mean_value: 41.5,
            },
        ] {
            let (_, g) = CDNOW.ll_and_grad(&s);
            for (i, want) in g.iter().enumerate() {
                let h = 1e-6;
                let nudge = |d: f64| {
                    let mut v = [CDNOW.p, CDNOW.q, CDNOW.gamma];
                    v[i] += d;
                    Params {
                        p: v[0],
                        q: v[1],
                        gamma: v[2],
                    }
                };
                let fd = (nudge(h).log_likelihood(&s) - nudge(-h).log_likelihood(&s)) / (2.0 * h);
                assert!(
                    (fd - want).abs() < 1e-6 * (1.0 + want.abs()),
                    "{i}: {want} vs {fd}"
                );
            }
        }
    }

    #[test]
    fn expected_value_shrinks_towards_the_population_mean() {
        let population = CDNOW.population_mean().unwrap();
        let one = CDNOW.expected_order_value(1, 100.0).unwrap();
        let many = CDNOW.expected_order_value(20, 100.0).unwrap();
        assert!(population < one && one < many && many < 100.0);
        assert_eq!(CDNOW.expected_order_value(0, 0.0), Some(population));
        let heavy = Params { q: 0.9, ..CDNOW };
        assert_eq!(heavy.expected_order_value(3, 10.0), None);
    }

    #[test]
    fn refuses_bad_input() {
        assert!(fit(&[]).is_err());
        let bad = [
            Spend {
                x: 1,
                mean_value: 10.0,
            },
            Spend {
                x: 2,
                mean_value: -1.0,
            },
        ];
        assert!(matches!(
            fit(&bad),
            Err(PredictError::InvalidInput { index: 1, .. })
        ));
    }
}
