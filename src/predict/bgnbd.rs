//! The BG/NBD model of repeat purchases (Fader, Hardie & Lee 2005, "Counting
//! your customers the easy way: an alternative to the Pareto/NBD model",
//! Marketing Science 24(2)).
//!
//! While alive, a customer buys as a Poisson process of rate λ ~ Gamma(r, α);
//! after each purchase they drop out with probability p ~ Beta(a, b). A
//! customer is summarised by `x` (repeat purchases: purchase days − 1), `t_x`
//! (time of the last purchase after the first) and `T` (time from the first
//! purchase to the end of observation), in one time unit (days or weeks).
//!
//! The modified variant MBG/NBD (Batislam, Denizel & Filiztekin 2007) also
//! lets a customer drop out right after the first purchase. Both share one
//! likelihood written with a shift `s` (0 for BG/NBD, 1 for MBG/NBD):
//!
//! ```text
//! L = Γ(r+x) αʳ / Γ(r) · [ B(a, b+x+s) / B(a,b) · (α+T)^−(r+x)
//!                        + δ · B(a+1, b+x+s−1) / B(a,b) · (α+t_x)^−(r+x) ]
//! ```
//!
//! with δ = 1 when x > 0 or s = 1. Note what the BG/NBD implies for a
//! customer who never came back (x = 0): they cannot have dropped out yet, so
//! their P(alive) is exactly 1 whatever the time since their purchase. The
//! MBG/NBD gives them P(alive) < 1, decreasing with that time.

use std::collections::HashMap;

pub use crate::model::Variant;

use super::PredictError;
use super::optim::minimize;
use super::special::{digamma, ln_beta, ln_gamma, ln_hyp2f1};

/// The per-customer summary the model is fitted on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Repeat purchases (distinct purchase days − 1).
    pub x: u32,
    /// Time of the last purchase, after the first (0 when x = 0).
    pub t_x: f64,
    /// Time from the first purchase to the end of observation (≥ t_x).
    pub t: f64,
}

impl Variant {
    fn shift(self) -> f64 {
        match self {
            Variant::BgNbd => 0.0,
            Variant::Modified => 1.0,
        }
    }

    /// Whether the "dropped out after the last purchase" term is present.
    fn has_dropout_term(self, x: u32) -> bool {
        x > 0 || self == Variant::Modified
    }

    /// Name as written in jobs and `model_parameters`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::BgNbd => "bgnbd",
            Variant::Modified => "mbgnbd",
        }
    }
}

/// Fitted parameters: r, α (purchase rate), a, b (dropout).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
    pub variant: Variant,
}

/// A maximum-likelihood fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub params: Params,
    /// Total log-likelihood (summed over customers).
    pub log_likelihood: f64,
    pub customers: usize,
    pub iterations: usize,
}

/// Terms of the likelihood that depend on x only (cached per distinct x).
struct XTerms {
    /// ln Γ(r+x) − ln Γ(r)
    lg_rx: f64,
    /// ψ(r+x) − ψ(r)
    dpsi_rx: f64,
    /// ln B(a, b+x+s) − ln B(a, b) and its derivatives in a, b.
    beta_a: f64,
    beta_a_da: f64,
    beta_a_db: f64,
    /// ln B(a+1, b+x+s−1) − ln B(a, b) and its derivatives (when present).
    beta_d: f64,
    beta_d_da: f64,
    beta_d_db: f64,
}

impl Params {
    fn x_terms(&self, x: u32) -> XTerms {
        let (r, a, b) = (self.r, self.a, self.b);
        let s = self.variant.shift();
        let xf = f64::from(x);
        let ln_b_ab = ln_beta(a, b);
        let psi_ab = digamma(a + b);
        let psi_abxs = digamma(a + b + xf + s);
        let (beta_d, beta_d_da, beta_d_db) = if self.variant.has_dropout_term(x) {
            (
                ln_beta(a + 1.0, b + xf + s - 1.0) - ln_b_ab,
                digamma(a + 1.0) - psi_abxs - digamma(a) + psi_ab,
                digamma(b + xf + s - 1.0) - psi_abxs - digamma(b) + psi_ab,
            )
        } else {
            (f64::NEG_INFINITY, 0.0, 0.0)
        };
        XTerms {
            lg_rx: ln_gamma(r + xf) - ln_gamma(r),
            dpsi_rx: digamma(r + xf) - digamma(r),
            beta_a: ln_beta(a, b + xf + s) - ln_b_ab,
            beta_a_da: psi_ab - psi_abxs,
            beta_a_db: digamma(b + xf + s) - psi_abxs - digamma(b) + psi_ab,
            beta_d,
            beta_d_da,
            beta_d_db,
        }
    }

    fn valid(&self) -> bool {
        [self.r, self.alpha, self.a, self.b]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
    }

    /// Log-likelihood of one customer.
    pub fn log_likelihood(&self, c: &Summary) -> f64 {
        let terms = self.x_terms(c.x);
        self.ll_and_grad(c, &terms).0
    }

    /// ln L of one customer and its gradient in (r, α, a, b).
    fn ll_and_grad(&self, c: &Summary, k: &XTerms) -> (f64, [f64; 4]) {
        let (r, alpha) = (self.r, self.alpha);
        let rx = r + f64::from(c.x);
        let ln_at = (alpha + c.t).ln();
        let common = k.lg_rx + r * alpha.ln();
        let la = k.beta_a - rx * ln_at;
        let (ll, wa, wd, ln_atx) = if self.variant.has_dropout_term(c.x) {
            let ln_atx = (alpha + c.t_x).ln();
            let ld = k.beta_d - rx * ln_atx;
            let m = la.max(ld);
            let (ea, ed) = ((la - m).exp(), (ld - m).exp());
            let total = ea + ed;
            (m + total.ln(), ea / total, ed / total, ln_atx)
        } else {
            (la, 1.0, 0.0, 0.0)
        };
        let d_r = k.dpsi_rx + alpha.ln() - wa * ln_at - wd * ln_atx;
        let d_alpha = r / alpha - wa * rx / (alpha + c.t) - wd * rx / (alpha + c.t_x);
        let d_a = wa * k.beta_a_da + wd * k.beta_d_da;
        let d_b = wa * k.beta_a_db + wd * k.beta_d_db;
        (common + ll, [d_r, d_alpha, d_a, d_b])
    }

    /// P(alive at T | x, t_x, T).
    pub fn p_alive(&self, c: &Summary) -> f64 {
        if !self.variant.has_dropout_term(c.x) {
            return 1.0;
        }
        let rx = self.r + f64::from(c.x);
        // ln[a / (b+x+s−1)] + (r+x) ln[(α+T)/(α+t_x)]
        let ln_odds = (self.a / (self.b + f64::from(c.x) + self.variant.shift() - 1.0)).ln()
            + rx * ((self.alpha + c.t).ln() - (self.alpha + c.t_x).ln());
        1.0 / (1.0 + ln_odds.exp())
    }

    /// Expected purchases in (T, T + t] of a customer with summary `c`.
    pub fn expected_purchases(&self, c: &Summary, t: f64) -> Result<f64, PredictError> {
        if t <= 0.0 {
            return Ok(0.0);
        }
        let s = self.variant.shift();
        let xf = f64::from(c.x);
        let rx = self.r + xf;
        // The formula has a removable singularity at a = 1.
        let a = if (self.a - 1.0).abs() < 1e-7 {
            1.0 + 1e-7
        } else {
            self.a
        };
        let c_hyp = a + self.b + xf + s - 1.0;
        let z = t / (self.alpha + c.t + t);
        let ln_f = ln_hyp2f1(rx, self.b + xf + s, c_hyp, z)?;
        // 1 − ((α+T)/(α+T+t))^(r+x) · 2F1 = −expm1(ln …)
        let bracket = -((rx * (1.0 - z).ln() + ln_f).exp_m1());
        let value = c_hyp / (a - 1.0) * bracket * self.p_alive(c);
        Ok(value.max(0.0))
    }

    /// Expected purchases in (0, t] of a customer who just made a first purchase.
    pub fn expected_purchases_new(&self, t: f64) -> Result<f64, PredictError> {
        // x = 0, T = 0: for the BG/NBD this is Fader et al.'s E[X(t)].
        let fresh = Params {
            variant: Variant::BgNbd,
            ..*self
        };
        let value = fresh.expected_purchases(
            &Summary {
                x: 0,
                t_x: 0.0,
                t: 0.0,
            },
            t,
        )?;
        Ok(match self.variant {
            Variant::BgNbd => value,
            // MBG/NBD: the first purchase may already have been the last.
            Variant::Modified => value * self.b / (self.a + self.b),
        })
    }
}

fn check(data: &[Summary]) -> Result<(), PredictError> {
    if data.is_empty() {
        return Err(PredictError::NoData {
            model: "BG/NBD",
            detail: "no customer".into(),
        });
    }
    for (index, c) in data.iter().enumerate() {
        let ok = c.t_x.is_finite()
            && c.t.is_finite()
            && c.t_x >= 0.0
            && c.t >= c.t_x
            && (c.x > 0 || c.t_x == 0.0);
        if !ok {
            return Err(PredictError::InvalidInput {
                model: "BG/NBD",
                index,
                detail: format!(
                    "x = {}, t_x = {}, T = {} (need 0 ≤ t_x ≤ T, t_x = 0 when x = 0)",
                    c.x, c.t_x, c.t
                ),
            });
        }
    }
    if data.iter().all(|c| c.x == 0) {
        return Err(PredictError::NoData {
            model: "BG/NBD",
            detail: "no customer made a repeat purchase".into(),
        });
    }
    Ok(())
}

/// Fits the model by maximum likelihood. Customers with the same summary are
/// grouped, and terms that depend on `x` only are computed once per distinct
/// `x`, so an iteration costs a few logarithms per distinct summary.
pub fn fit(data: &[Summary], variant: Variant) -> Result<Fit, PredictError> {
    check(data)?;
    let mut groups: HashMap<(u32, u64, u64), f64> = HashMap::new();
    for c in data {
        *groups
            .entry((c.x, c.t_x.to_bits(), c.t.to_bits()))
            .or_default() += 1.0;
    }
    let mut groups: Vec<(Summary, f64)> = groups
        .into_iter()
        .map(|((x, tx, t), w)| {
            (
                Summary {
                    x,
                    t_x: f64::from_bits(tx),
                    t: f64::from_bits(t),
                },
                w,
            )
        })
        .collect();
    // A fixed order: the sums, hence the fit, do not depend on hashing.
    groups.sort_by(|(a, _), (b, _)| {
        (a.x, a.t_x, a.t)
            .partial_cmp(&(b.x, b.t_x, b.t))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let max_x = groups.iter().map(|(c, _)| c.x).max().unwrap_or(0);
    let n = data.len() as f64;
    let mean_t = data.iter().map(|c| c.t).sum::<f64>() / n;

    let objective = |theta: &[f64]| -> Option<(f64, Vec<f64>)> {
        let p = Params {
            r: theta[0].exp(),
            alpha: theta[1].exp(),
            a: theta[2].exp(),
            b: theta[3].exp(),
            variant,
        };
        if !p.valid() {
            return None;
        }
        let mut cache: Vec<Option<XTerms>> = (0..=max_x).map(|_| None).collect();
        let mut ll = 0.0;
        let mut grad = [0.0; 4];
        for (c, w) in &groups {
            let k = cache[c.x as usize].get_or_insert_with(|| p.x_terms(c.x));
            let (l, g) = p.ll_and_grad(c, k);
            ll += w * l;
            for (total, d) in grad.iter_mut().zip(g) {
                *total += w * d;
            }
        }
        let values = [p.r, p.alpha, p.a, p.b];
        // Mean negative log-likelihood, gradient in log parameters.
        let g = grad.iter().zip(values).map(|(d, v)| -d * v / n).collect();
        Some((-ll / n, g))
    };
    let start = [0.0, mean_t.max(1e-3).ln(), 0.0, 0.0];
    let m = minimize("BG/NBD", &start, objective)?;
    Ok(Fit {
        params: Params {
            r: m.x[0].exp(),
            alpha: m.x[1].exp(),
            a: m.x[2].exp(),
            b: m.x[3].exp(),
            variant,
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
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
        variant: Variant::BgNbd,
    };

    fn customers() -> Vec<Summary> {
        vec![
            Summary {
                x: 0,
                t_x: 0.0,
                t: 38.86,
            },
            Summary {
                x: 2,
                t_x: 30.43,
                t: 38.86,
            },
            Summary {
                x: 7,
                t_x: 35.0,
                t: 38.0,
            },
            Summary {
                x: 1,
                t_x: 1.71,
                t: 38.86,
            },
        ]
    }

    fn nudge(p: Params, i: usize, h: f64) -> Params {
        let mut v = [p.r, p.alpha, p.a, p.b];
        v[i] += h;
        Params {
            r: v[0],
            alpha: v[1],
            a: v[2],
            b: v[3],
            ..p
        }
    }

    /// The analytic gradient matches central finite differences.
    #[test]
    fn gradient_matches_finite_differences() {
        for variant in [Variant::BgNbd, Variant::Modified] {
            let p = Params { variant, ..CDNOW };
            for c in customers() {
                let (_, g) = p.ll_and_grad(&c, &p.x_terms(c.x));
                for (i, want) in g.iter().enumerate() {
                    let h = 1e-6;
                    let (up, down) = (nudge(p, i, h), nudge(p, i, -h));
                    let fd = (up.log_likelihood(&c) - down.log_likelihood(&c)) / (2.0 * h);
                    assert!(
                        (fd - want).abs() < 1e-6 * (1.0 + want.abs()),
                        "{variant:?} {c:?} param {i}: analytic {want}, numeric {fd}"
                    );
                }
            }
        }
    }

    #[test]
    fn p_alive_of_one_repeat_purchase_decreases_with_time_since_it() {
        let mut last = 1.0;
        for gap in [0.0, 5.0, 10.0, 20.0, 40.0] {
            let p = CDNOW.p_alive(&Summary {
                x: 1,
                t_x: 10.0,
                t: 10.0 + gap,
            });
            assert!(p < last || (gap == 0.0 && p <= 1.0), "{gap}: {p}");
            last = p;
        }
        // The BG/NBD cannot see a customer with no repeat purchase drop out…
        let once = Summary {
            x: 0,
            t_x: 0.0,
            t: 30.0,
        };
        assert_eq!(CDNOW.p_alive(&once), 1.0);
        // …the MBG/NBD can, and more so the longer ago the purchase was.
        let m = Params {
            variant: Variant::Modified,
            ..CDNOW
        };
        let (p10, p30) = (m.p_alive(&Summary { t: 10.0, ..once }), m.p_alive(&once));
        assert!(p10 < 1.0 && p30 < p10, "{p10} {p30}");
    }

    #[test]
    fn expected_purchases_of_a_new_customer_grow_concavely() {
        // E[X(0)] = 0, increasing and concave (dropouts accumulate); the
        // values themselves are checked by Monte Carlo in tests/it/predict.rs.
        let e = |t| CDNOW.expected_purchases_new(t).unwrap();
        assert_eq!(e(0.0), 0.0);
        let (e1, e2, e3) = (e(10.0), e(20.0), e(30.0));
        assert!(0.0 < e1 && e1 < e2 && e2 < e3);
        assert!(e2 - e1 > e3 - e2);
    }
}
