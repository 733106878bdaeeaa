//! Log-space special functions: ln Γ and ψ (digamma) from `statrs`, ln B, and
//! the Gauss hypergeometric function 2F1 that the BG/NBD's conditional
//! expectation needs, summed as a series with a running log scale so that
//! large values never overflow.

use super::PredictError;

/// ln Γ(x), x > 0.
pub fn ln_gamma(x: f64) -> f64 {
    statrs::function::gamma::ln_gamma(x)
}

/// ψ(x) = d ln Γ(x) / dx, x > 0.
pub fn digamma(x: f64) -> f64 {
    statrs::function::gamma::digamma(x)
}

/// ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b), a, b > 0.
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// Most terms summed before giving up (z = 0.999 needs about 40,000).
const MAX_TERMS: usize = 1_000_000;

/// ln 2F1(a, b; c; z) for a, b, c > 0 and 0 ≤ z < 1, where every term of
/// Σ (a)ₖ(b)ₖ / ((c)ₖ k!) zᵏ is positive: no cancellation, and the terms
/// shrink geometrically (ratio → z) once k > |a + b − c|. The sum is kept as
/// `scale · s` with `s` renormalised whenever it grows large.
pub fn ln_hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Result<f64, PredictError> {
    let bad = |terms| PredictError::Hypergeometric { a, b, c, z, terms };
    if !(a > 0.0 && b > 0.0 && c > 0.0 && (0.0..1.0).contains(&z)) {
        return Err(bad(0));
    }
    if z == 0.0 {
        return Ok(0.0);
    }
    let mut ln_scale = 0.0_f64;
    let mut sum = 1.0_f64;
    let mut term = 1.0_f64;
    for k in 0..MAX_TERMS {
        let kf = k as f64;
        let ratio = (a + kf) * (b + kf) / ((c + kf) * (kf + 1.0)) * z;
        term *= ratio;
        sum += term;
        if sum > 1e200 {
            sum /= 1e200;
            term /= 1e200;
            ln_scale += 200.0 * std::f64::consts::LN_10;
        }
        // Once the ratio is below 1 the tail is at most term · ratio / (1 − ratio).
        if ratio < 1.0 && term * ratio / (1.0 - ratio) <= 1e-16 * sum {
            return Ok(ln_scale + sum.ln());
        }
        if !sum.is_finite() {
            return Err(bad(k + 1));
        }
    }
    Err(bad(MAX_TERMS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        assert!(
            (got - want).abs() <= rel * want.abs().max(1e-300),
            "got {got}, want {want}"
        );
    }

    #[test]
    fn hyp2f1_closed_forms() {
        // 2F1(1, 1; 2; z) = −ln(1 − z) / z.
        for z in [0.1_f64, 0.5, 0.9, 0.999] {
            close(
                ln_hyp2f1(1.0, 1.0, 2.0, z).unwrap().exp(),
                -(1.0 - z).ln() / z,
                1e-12,
            );
        }
        // 2F1(a, b; b; z) = (1 − z)^−a.
        for (a, z) in [(0.5, 0.3_f64), (3.7, 0.95), (40.0, 0.9)] {
            close(
                ln_hyp2f1(a, 2.5, 2.5, z).unwrap(),
                -a * (1.0 - z).ln(),
                1e-12,
            );
        }
        // 2F1(1/2, 1; 3/2; z²) = atanh(z) / z.
        for z in [0.2_f64, 0.7, 0.99] {
            close(
                ln_hyp2f1(0.5, 1.0, 1.5, z * z).unwrap().exp(),
                z.atanh() / z,
                1e-12,
            );
        }
        assert_eq!(ln_hyp2f1(2.0, 3.0, 4.0, 0.0).unwrap(), 0.0);
    }

    #[test]
    fn hyp2f1_reference_value() {
        // The BG/NBD's 2F1 at the CDNOW parameters (x = 2), against a plain
        // summation of the same series.
        let v = ln_hyp2f1(2.243, 4.426, 6.219, 0.4).unwrap().exp();
        // Independent check by direct double summation of the same series.
        let mut s = 0.0;
        let mut t = 1.0;
        for k in 0..400 {
            s += t;
            let k = k as f64;
            t *= (2.243 + k) * (4.426 + k) / ((6.219 + k) * (k + 1.0)) * 0.4;
        }
        close(v, s, 1e-13);
        // mpmath.hyp2f1 at 30 digits.
        close(v, 2.185_804_379_929_841, 1e-13);
        close(
            ln_hyp2f1(12.243, 14.426, 16.219, 0.97).unwrap(),
            37.181_807_455_059_33,
            1e-13,
        );
        close(
            ln_hyp2f1(0.243, 2.426, 2.219, 0.9).unwrap(),
            0.666_613_849_418_203_9,
            1e-12,
        );
    }

    #[test]
    fn hyp2f1_refuses_out_of_domain() {
        assert!(ln_hyp2f1(1.0, 1.0, 2.0, 1.0).is_err());
        assert!(ln_hyp2f1(-1.0, 1.0, 2.0, 0.5).is_err());
        assert!(ln_hyp2f1(1.0, 1.0, 2.0, f64::NAN).is_err());
    }

    #[test]
    fn gamma_functions() {
        close(ln_gamma(5.0), 24f64.ln(), 1e-14);
        close(digamma(1.0), -0.577_215_664_901_532_9, 1e-12);
        close(ln_beta(2.0, 3.0), (1.0f64 / 12.0).ln(), 1e-13);
    }
}
