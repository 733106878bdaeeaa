//! A small quasi-Newton minimiser (BFGS with an Armijo backtracking line
//! search) for the few-parameter likelihoods of this module. The models pass
//! analytic gradients, so each iteration costs one pass over the customer
//! summary; 4 parameters need no linear algebra crate.
//!
//! The models optimise over the logarithms of their (positive) parameters, so
//! every step stays in the domain; a step whose objective is not finite is
//! shortened like any step that does not decrease it.

use super::PredictError;

/// What the minimiser found.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
}

/// Largest |gradient| component accepted as a stationary point. The models
/// minimise the *mean* negative log-likelihood per customer, so this does not
/// depend on the number of customers.
pub const GRADIENT_TOLERANCE: f64 = 1e-7;
const MAX_ITERATIONS: usize = 1000;
/// No coordinate moves more than this in one step (e-fold 20 in a log parameter).
const MAX_STEP: f64 = 3.0;
/// Near the optimum the objective stops decreasing at the precision of
/// f64 before the gradient reaches [`GRADIENT_TOLERANCE`]: after this many
/// steps without a relative decrease of 1e-15, a point whose gradient is
/// below [`STALLED_GRADIENT`] is accepted.
const STALL_STEPS: usize = 5;
const STALLED_GRADIENT: f64 = 1e-4;

fn norm_inf(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises `f` from `x0`; `f` returns the value and the gradient, or `None`
/// where it is not defined (treated as +∞).
pub fn minimize<F>(model: &'static str, x0: &[f64], mut f: F) -> Result<Minimum, PredictError>
where
    F: FnMut(&[f64]) -> Option<(f64, Vec<f64>)>,
{
    let n = x0.len();
    let identity = |h: &mut Vec<Vec<f64>>| {
        for (i, row) in h.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = if i == j { 1.0 } else { 0.0 };
            }
        }
    };
    let mut h = vec![vec![0.0; n]; n];
    identity(&mut h);
    let mut x = x0.to_vec();
    let (mut fx, mut g) = f(&x)
        .filter(|(v, g)| v.is_finite() && g.iter().all(|d| d.is_finite()))
        .ok_or(PredictError::NotConverged {
            model,
            iterations: 0,
            gradient: f64::NAN,
        })?;
    let mut stalled = 0;
    for iteration in 0..MAX_ITERATIONS {
        if norm_inf(&g) < GRADIENT_TOLERANCE {
            return Ok(Minimum {
                x,
                value: fx,
                iterations: iteration,
            });
        }
        let mut d: Vec<f64> = (0..n).map(|i| -dot(&h[i], &g)).collect();
        if dot(&d, &g) >= 0.0 {
            identity(&mut h);
            d = g.iter().map(|v| -v).collect();
        }
        let longest = norm_inf(&d);
        let mut step = if longest > MAX_STEP {
            MAX_STEP / longest
        } else {
            1.0
        };
        let slope = dot(&d, &g);
        let mut accepted = None;
        for _ in 0..60 {
            let candidate: Vec<f64> = x.iter().zip(&d).map(|(x, d)| x + step * d).collect();
            if let Some((v, gv)) = f(&candidate)
                && v.is_finite()
                && gv.iter().all(|d| d.is_finite())
                && v <= fx + 1e-4 * step * slope
            {
                accepted = Some((candidate, v, gv));
                break;
            }
            step *= 0.5;
        }
        let Some((x_new, f_new, g_new)) = accepted else {
            // No decrease along the direction: at the precision of f, this is
            // a minimum if the gradient is nearly zero, else a failure.
            if norm_inf(&g) < STALLED_GRADIENT {
                return Ok(Minimum {
                    x,
                    value: fx,
                    iterations: iteration,
                });
            }
            return Err(PredictError::NotConverged {
                model,
                iterations: iteration,
                gradient: norm_inf(&g),
            });
        };
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() && sy > 0.0 {
            // H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ
            let rho = 1.0 / sy;
            let hy: Vec<f64> = (0..n).map(|i| dot(&h[i], &y)).collect();
            let yhy = dot(&y, &hy);
            for i in 0..n {
                for j in 0..n {
                    h[i][j] +=
                        (1.0 + rho * yhy) * rho * s[i] * s[j] - rho * (hy[i] * s[j] + s[i] * hy[j]);
                }
            }
        }
        if fx - f_new <= 1e-15 * fx.abs().max(1.0) {
            stalled += 1;
        } else {
            stalled = 0;
        }
        x = x_new;
        fx = f_new;
        g = g_new;
        if stalled >= STALL_STEPS && norm_inf(&g) < STALLED_GRADIENT {
            return Ok(Minimum {
                x,
                value: fx,
                iterations: iteration + 1,
            });
        }
    }
    Err(PredictError::NotConverged {
        model,
        iterations: MAX_ITERATIONS,
        gradient: norm_inf(&g),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rosenbrock() {
        let m = minimize("test", &[-1.2, 1.0], |p| {
            let (x, y) = (p[0], p[1]);
            let v = (1.0 - x).powi(2) + 100.0 * (y - x * x).powi(2);
            let gx = -2.0 * (1.0 - x) - 400.0 * x * (y - x * x);
            let gy = 200.0 * (y - x * x);
            Some((v, vec![gx, gy]))
        })
        .unwrap();
        assert!(
            (m.x[0] - 1.0).abs() < 1e-6 && (m.x[1] - 1.0).abs() < 1e-6,
            "{m:?}"
        );
    }

    #[test]
    fn unbounded_is_an_error_not_a_panic() {
        let r = minimize("test", &[0.0], |p| Some((-p[0], vec![-1.0])));
        assert!(matches!(r, Err(PredictError::NotConverged { .. })), "{r:?}");
    }

    #[test]
    fn undefined_start_is_an_error() {
        let r = minimize("test", &[0.0], |_| None);
        assert!(r.is_err());
    }
}
