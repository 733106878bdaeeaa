//! The predictive models (`src/predict/`): the published CDNOW estimates,
//! parameter recovery on simulated customers, and the conditional
//! expectations against Monte Carlo simulations of the fitted model.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma, Uniform};
use segments::predict::bgnbd::{self, Summary, Variant};
use segments::predict::gamma_gamma::{self, Spend};

use crate::common::repo;

/// (x, t_x, T, average repeat spend) of the 2,357 CDNOW customers
/// (tests/data/cdnow/README.md).
fn cdnow() -> Vec<(u32, f64, f64, f64)> {
    let text = std::fs::read_to_string(
        repo().join("tests/data/cdnow/cdnow_customers_summary_with_transactions.csv"),
    )
    .unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            )
        })
        .collect()
}

fn within(name: &str, got: f64, published: f64, tolerance: f64) {
    let error = (got - published).abs() / published.abs();
    assert!(
        error <= tolerance,
        "{name}: fitted {got}, published {published} ({:.2}% off, tolerance {:.0}%)",
        error * 100.0,
        tolerance * 100.0
    );
}

#[test]
fn cdnow_bgnbd_matches_the_published_estimates() {
    let data = cdnow();
    assert_eq!(data.len(), 2357);
    let summaries: Vec<Summary> = data
        .iter()
        .map(|&(x, t_x, t, _)| Summary { x, t_x, t })
        .collect();
    let fit = bgnbd::fit(&summaries, Variant::BgNbd).unwrap();
    let p = fit.params;
    eprintln!(
        "CDNOW BG/NBD: r = {:.4}, alpha = {:.4}, a = {:.4}, b = {:.4}, LL = {:.2} ({} iterations)",
        p.r, p.alpha, p.a, p.b, fit.log_likelihood, fit.iterations
    );
    // Fader, Hardie & Lee (2005), table 1.
    within("r", p.r, 0.243, 0.01);
    within("alpha", p.alpha, 4.414, 0.01);
    within("a", p.a, 0.793, 0.01);
    within("b", p.b, 2.426, 0.01);
    within("log-likelihood", fit.log_likelihood, -9582.4, 0.0001);
}

#[test]
fn cdnow_gamma_gamma_matches_the_published_estimates() {
    let spend: Vec<Spend> = cdnow()
        .into_iter()
        .filter(|&(x, ..)| x > 0)
        .map(|(x, _, _, mean_value)| Spend { x, mean_value })
        .collect();
    assert_eq!(spend.len(), 946);
    let fit = gamma_gamma::fit(&spend).unwrap();
    let p = fit.params;
    eprintln!(
        "CDNOW Gamma-Gamma: p = {:.4}, q = {:.4}, gamma = {:.4}, LL = {:.2} ({} iterations)",
        p.p, p.q, p.gamma, fit.log_likelihood, fit.iterations
    );
    // Fader, Hardie & Lee (2005) "RFM and CLV"; lifetimes prints v = 15.45.
    within("p", p.p, 6.25, 0.01);
    within("q", p.q, 3.74, 0.01);
    within("gamma", p.gamma, 15.44, 0.01);
}

/// One simulated customer of a (M)BG/NBD process, written independently of
/// the generator: purchase times after the first purchase (at 0) up to `end`.
fn simulate(rng: &mut ChaCha8Rng, p: &bgnbd::Params, end: f64) -> Vec<f64> {
    let lambda = Gamma::new(p.r, 1.0 / p.alpha).unwrap().sample(rng);
    let dropout = Beta::new(p.a, p.b).unwrap().sample(rng);
    let coin = Uniform::new(0.0, 1.0).unwrap();
    let mut times = Vec::new();
    if p.variant == Variant::Modified && coin.sample(rng) < dropout {
        return times;
    }
    let gap = Exp::new(lambda.max(1e-300)).unwrap();
    let mut t = 0.0;
    loop {
        t += gap.sample(rng);
        if t > end {
            return times;
        }
        times.push(t);
        if coin.sample(rng) < dropout {
            return times;
        }
    }
}

/// The calibration summary of simulated purchase times, observed until `t_cal`.
fn summarise(times: &[f64], t_cal: f64) -> Summary {
    let cal: Vec<f64> = times.iter().copied().filter(|&t| t <= t_cal).collect();
    Summary {
        x: cal.len() as u32,
        t_x: cal.last().copied().unwrap_or(0.0),
        t: t_cal,
    }
}

const KNOWN: bgnbd::Params = bgnbd::Params {
    r: 0.6,
    alpha: 20.0,
    a: 0.9,
    b: 4.0,
    variant: Variant::BgNbd,
};

/// Known parameters (in days) are recovered from 40,000 simulated
/// customers observed for 30 to 730 days, within 10% each.
#[test]
fn bgnbd_recovers_known_parameters() {
    for variant in [Variant::BgNbd, Variant::Modified] {
        let known = bgnbd::Params { variant, ..KNOWN };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let observed = Uniform::new(30.0f64, 730.0).unwrap();
        let summaries: Vec<Summary> = (0..40_000)
            .map(|_| {
                let t_cal = observed.sample(&mut rng).round();
                summarise(&simulate(&mut rng, &known, t_cal), t_cal)
            })
            .collect();
        let fit = bgnbd::fit(&summaries, variant).unwrap().params;
        eprintln!("{variant:?}: known {known:?}\nfitted {fit:?}");
        within("r", fit.r, known.r, 0.10);
        within("alpha", fit.alpha, known.alpha, 0.10);
        within("a", fit.a, known.a, 0.10);
        within("b", fit.b, known.b, 0.10);
    }
}

/// Known Gamma-Gamma parameters are recovered from 20,000 simulated repeat
/// customers within 10%.
#[test]
fn gamma_gamma_recovers_known_parameters() {
    let known = gamma_gamma::Params {
        p: 4.0,
        q: 3.0,
        gamma: 60.0,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let orders = Uniform::new_inclusive(1u32, 12).unwrap();
    let nu = Gamma::new(known.q, 1.0 / known.gamma).unwrap();
    let spend: Vec<Spend> = (0..20_000)
        .map(|_| {
            let x = orders.sample(&mut rng);
            let value = Gamma::new(known.p, 1.0 / nu.sample(&mut rng)).unwrap();
            let total: f64 = (0..x).map(|_| value.sample(&mut rng)).sum();
            Spend {
                x,
                mean_value: total / f64::from(x),
            }
        })
        .collect();
    let fit = gamma_gamma::fit(&spend).unwrap().params;
    eprintln!("known {known:?}\nfitted {fit:?}");
    within("p", fit.p, known.p, 0.10);
    within("q", fit.q, known.q, 0.10);
    within("gamma", fit.gamma, known.gamma, 0.10);
}

/// E[purchases in (T, T+t] | x, t_x, T] and P(alive | x, t_x, T), summed
/// over customers simulated from the model fitted on CDNOW, equal the
/// simulated holdout purchases and survivors (law of total expectation),
/// overall and per group of calibration purchases, within 3%.
#[test]
fn conditional_expectations_match_monte_carlo() {
    let summaries: Vec<Summary> = cdnow()
        .iter()
        .map(|&(x, t_x, t, _)| Summary { x, t_x, t })
        .collect();
    for variant in [Variant::BgNbd, Variant::Modified] {
        let fitted = bgnbd::fit(&summaries, variant).unwrap().params;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let horizon = 39.0;
        let t_cal = Uniform::new(27.0, 39.0).unwrap();
        // (predicted purchases, simulated purchases, predicted alive, simulated alive) per group
        let mut groups = [[0.0f64; 4]; 3];
        for _ in 0..100_000 {
            let t = t_cal.sample(&mut rng);
            // Simulate the whole life, then cut: alive at T means a purchase
            // after T (while alive) or no dropout yet; replay with a marker.
            let lambda = Gamma::new(fitted.r, 1.0 / fitted.alpha)
                .unwrap()
                .sample(&mut rng);
            let dropout = Beta::new(fitted.a, fitted.b).unwrap().sample(&mut rng);
            let coin = Uniform::new(0.0, 1.0).unwrap();
            let gap = Exp::new(lambda.max(1e-300)).unwrap();
            let mut times = Vec::new();
            let mut death = f64::INFINITY;
            if variant == Variant::Modified && coin.sample(&mut rng) < dropout {
                death = 0.0;
            }
            let mut now = 0.0;
            while death.is_infinite() {
                now += gap.sample(&mut rng);
                if now > t + horizon {
                    break;
                }
                times.push(now);
                if coin.sample(&mut rng) < dropout {
                    death = now;
                }
            }
            let summary = summarise(&times, t);
            let holdout = times.iter().filter(|&&s| s > t).count() as f64;
            let group = match summary.x {
                0 => 0,
                1..=2 => 1,
                _ => 2,
            };
            let g = &mut groups[group];
            g[0] += fitted.expected_purchases(&summary, horizon).unwrap();
            g[1] += holdout;
            g[2] += fitted.p_alive(&summary);
            g[3] += if death > t { 1.0 } else { 0.0 };
        }
        for (name, g) in ["x = 0", "x = 1-2", "x >= 3"].iter().zip(groups) {
            eprintln!(
                "{variant:?} {name}: expected purchases {:.0} vs simulated {:.0}; P(alive) {:.0} vs {:.0}",
                g[0], g[1], g[2], g[3]
            );
            within(&format!("{variant:?} {name} purchases"), g[0], g[1], 0.03);
            within(&format!("{variant:?} {name} alive"), g[2], g[3], 0.03);
        }
    }
}
