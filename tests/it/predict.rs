//! The predictive models (`src/predict/`): the published CDNOW estimates,
//! parameter recovery on simulated customers, and the conditional
//! expectations against Monte Carlo simulations of the fitted model.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma, Uniform};
use segments::predict::bgnbd::{self, Summary, Variant};
use segments::predict::gamma_gamma::{self, Spend};

use crate::common::{read_parquet, repo, run_job as run, segments, table_file, write_config};
use crate::jobs::generated;

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

// ---------------------------------------------------------------------------
// The `predict:` block end to end: jobs/rfm_with_predictions.yaml on generated data
// ---------------------------------------------------------------------------

/// The shipped job with a 1-month potential horizon (so that a short backfill
/// has training data) and its SQL from the repository.
fn predictions_job(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("jobs/rfm_with_predictions.yaml")).unwrap();
    let text = text
        .replacen(
            "version: 1\n",
            &format!("version: 1\nsql_dir: {}\n", repo().join("sql").display()),
            1,
        )
        .replace("horizon_months: 3 ", "horizon_months: 1 ")
        .replace("training_periods: 6 ", "training_periods: 2 ");
    let path = dir.join("job.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// (name, contract type, nullable) of a schemas/*.json, parsed here.
fn contract(table: &str) -> Vec<(String, String, bool)> {
    let text = std::fs::read_to_string(repo().join(format!("schemas/{table}.json"))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().into(),
                c["type"].as_str().unwrap().into(),
                c["nullable"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn type_name(t: &DataType) -> String {
    match t {
        DataType::Utf8 => "utf8".into(),
        DataType::Int64 => "int64".into(),
        DataType::Float64 => "float64".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        other => format!("{other:?}"),
    }
}

fn one(batches: Vec<RecordBatch>) -> RecordBatch {
    let schema = batches[0].schema();
    concat_batches(&schema, &batches).unwrap()
}

#[test]
fn predictions_job_publishes_scores_for_every_customer() {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 600, 14, "2024-01", 5);
    let job = predictions_job(dir.path());
    let warehouse = dir.path().join("warehouse");
    for period in ["2024-12", "2025-01", "2025-02"] {
        run(dir.path(), &job, &config, period);
    }
    let file = |table: &str| table_file(&warehouse, "rfm_with_predictions", table, "2025-02");

    // Contracts.
    for table in ["predictions", "model_parameters"] {
        let batch = one(read_parquet(&file(table)));
        let actual: Vec<(String, String, bool)> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), type_name(f.data_type()), f.is_nullable()))
            .collect();
        assert_eq!(actual, contract(table), "{table}");
    }

    // One row per customer of the snapshot, in customer_id order.
    let snapshot = one(read_parquet(&file("snapshots")));
    let predictions = one(read_parquet(&file("predictions")));
    let ids = |b: &RecordBatch| -> Vec<String> {
        b.column_by_name("customer_id")
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect()
    };
    let mut snapshot_ids = ids(&snapshot);
    snapshot_ids.sort();
    assert_eq!(ids(&predictions), snapshot_ids);
    let floats = |name: &str| {
        predictions
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone()
    };
    let p_alive = floats("p_alive");
    let expected = floats("expected_purchases");
    let potential = floats("potential_score");
    let clv = predictions
        .column_by_name("clv")
        .unwrap()
        .as_primitive::<Decimal128Type>()
        .clone();
    for i in 0..predictions.num_rows() {
        assert!(
            (0.0..=1.0).contains(&p_alive.value(i)),
            "p_alive {}",
            p_alive.value(i)
        );
        assert!(expected.value(i) >= 0.0);
        assert!(!clv.is_null(i) && clv.value(i) >= 0);
        assert!(!potential.is_null(i) && (0.0..=1.0).contains(&potential.value(i)));
    }

    // The manifest records the fits and the held-out AUC.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(warehouse.join("rfm_with_predictions/_runs/period=2025-02/_manifest.json"))
            .unwrap(),
    )
    .unwrap();
    let facts = &manifest["predictions"];
    assert_eq!(facts["model"], "bgnbd");
    assert_eq!(
        facts["customers"].as_u64().unwrap() as usize,
        predictions.num_rows()
    );
    let auc = facts["potential"]["held_out_auc"].as_f64().unwrap();
    assert!(auc > 0.6 && auc <= 1.0, "AUC {auc}");
    assert_eq!(
        facts["potential"]["feature_periods"],
        serde_json::json!(["2025-01", "2024-12"])
    );

    // model_parameters: the 4 + 3 parameters, each with its model's log-likelihood.
    let parameters = one(read_parquet(&file("model_parameters")));
    let names: Vec<String> = (0..parameters.num_rows())
        .map(|i| {
            format!(
                "{}.{}",
                parameters.column(0).as_string::<i32>().value(i),
                parameters.column(1).as_string::<i32>().value(i)
            )
        })
        .collect();
    for expected in [
        "bgnbd.r",
        "bgnbd.alpha",
        "bgnbd.a",
        "bgnbd.b",
        "gamma_gamma.p",
        "gamma_gamma.q",
        "gamma_gamma.gamma",
        "potential.intercept",
        "potential.held_out_auc",
    ] {
        assert!(
            names.contains(&expected.to_string()),
            "{expected} in {names:?}"
        );
    }
    let ll = parameters.column(4).as_primitive::<Float64Type>();
    assert_eq!(
        ll.value(0),
        facts["purchase_model"]["log_likelihood"].as_f64().unwrap()
    );

    // A rerun publishes the same bytes.
    let before = [
        std::fs::read(file("predictions")).unwrap(),
        std::fs::read(file("model_parameters")).unwrap(),
    ];
    run(dir.path(), &job, &config, "2025-02");
    let after = [
        std::fs::read(file("predictions")).unwrap(),
        std::fs::read(file("model_parameters")).unwrap(),
    ];
    assert!(before == after, "a rerun changed the predictive tables");

    // Its segments are the default job's: the block adds tables, nothing else.
    run(
        dir.path(),
        &crate::common::default_job(),
        &config,
        "2025-02",
    );
    let segments_of = |job: &str| {
        let b = one(read_parquet(&table_file(
            &warehouse,
            job,
            "snapshots",
            "2025-02",
        )));
        let ids = ids(&b);
        let segments: Vec<String> = b
            .column_by_name("segment")
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect();
        let mut pairs: Vec<(String, String)> = ids.into_iter().zip(segments).collect();
        pairs.sort();
        pairs
    };
    assert_eq!(
        segments_of("rfm_with_predictions"),
        segments_of("rfm_monthly")
    );

    // `model: mbgnbd` lets one-time buyers drop out: lost customers (mostly
    // one-time buyers, P(alive) = 1 under the BG/NBD) get a lower P(alive).
    let modified = dir.path().join("mbgnbd.yaml");
    std::fs::write(
        &modified,
        std::fs::read_to_string(&job)
            .unwrap()
            .replacen("name: rfm_with_predictions", "name: rfm_mbgnbd", 1)
            .replacen("model: bgnbd  ", "model: mbgnbd ", 1),
    )
    .unwrap();
    run(dir.path(), &modified, &config, "2025-02");
    let lost_p_alive = |job: &str| -> f64 {
        let snapshot = one(read_parquet(&table_file(
            &warehouse,
            job,
            "snapshots",
            "2025-02",
        )));
        let predictions = one(read_parquet(&table_file(
            &warehouse,
            job,
            "predictions",
            "2025-02",
        )));
        let lost: std::collections::BTreeSet<String> = (0..snapshot.num_rows())
            .filter(|&i| {
                snapshot
                    .column_by_name("segment")
                    .unwrap()
                    .as_string::<i32>()
                    .value(i)
                    == "lost"
            })
            .map(|i| {
                snapshot
                    .column_by_name("customer_id")
                    .unwrap()
                    .as_string::<i32>()
                    .value(i)
                    .to_string()
            })
            .collect();
        let ids = predictions
            .column_by_name("customer_id")
            .unwrap()
            .as_string::<i32>();
        let p = predictions
            .column_by_name("p_alive")
            .unwrap()
            .as_primitive::<Float64Type>();
        let values: Vec<f64> = (0..predictions.num_rows())
            .filter(|&i| lost.contains(ids.value(i)))
            .map(|i| p.value(i))
            .collect();
        values.iter().sum::<f64>() / values.len() as f64
    };
    let (plain, modified) = (
        lost_p_alive("rfm_with_predictions"),
        lost_p_alive("rfm_mbgnbd"),
    );
    assert!(
        modified < plain,
        "lost customers' P(alive): BG/NBD {plain}, MBG/NBD {modified}"
    );
    let parameters = one(read_parquet(&table_file(
        &warehouse,
        "rfm_mbgnbd",
        "model_parameters",
        "2025-02",
    )));
    assert_eq!(parameters.column(0).as_string::<i32>().value(0), "mbgnbd");

    // The first period has no earlier snapshot to learn from: null scores, and why.
    let first = one(read_parquet(&table_file(
        &warehouse,
        "rfm_with_predictions",
        "predictions",
        "2024-12",
    )));
    assert_eq!(
        first
            .column_by_name("potential_score")
            .unwrap()
            .null_count(),
        first.num_rows()
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(warehouse.join("rfm_with_predictions/_runs/period=2024-12/_manifest.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        manifest["predictions"]["potential"]["no_score_reason"]
            .as_str()
            .unwrap()
            .contains("backfill earlier periods")
    );
}

#[test]
fn predict_block_errors_name_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dir.path().join("data"),
        &dir.path().join("warehouse"),
    );
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "  time_unit: weeks ",
            "  time_unit: months ",
            &["predict.time_unit", "unknown variant `months`"],
        ),
        (
            "  horizon_months: 12 ",
            "  horizon_months: 0 ",
            &["predict.horizon_months", "1 to 120 months"],
        ),
        (
            "[champions, loyal]",
            "[champions, vip]",
            &[
                "predict.potential.target_segments[1]",
                "'vip' is not a declared segment",
            ],
        ),
        (
            "  orders_step: orders ",
            "  orders_step: purchases ",
            &["predict.orders_step", "no step named 'purchases'"],
        ),
    ];
    for (from, to, wanted) in cases {
        let job = predictions_job(dir.path());
        let text = std::fs::read_to_string(&job).unwrap();
        assert!(text.contains(from), "{from}");
        let text = text.replacen(from, to, 1);
        std::fs::write(&job, &text).unwrap();
        let line = text.lines().position(|l| l.contains(to.trim())).unwrap() + 1;
        let output = segments(
            dir.path(),
            &[
                "validate",
                "--job",
                job.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
            ],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("job.yaml:{line}")),
            "line {line} in {stderr}"
        );
        for w in wanted {
            assert!(stderr.contains(w), "{w} in {stderr}");
        }
    }
    // An orders step without the order columns fails validation (exit 2).
    let job = predictions_job(dir.path());
    let text = std::fs::read_to_string(&job).unwrap().replacen(
        "orders_step: orders ",
        "orders_step: customer_metrics ",
        1,
    );
    std::fs::write(&job, text).unwrap();
    let output = segments(
        dir.path(),
        &[
            "validate",
            "--job",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the orders step `customer_metrics` (predict.orders_step) must return"),
        "{stderr}"
    );
    // The tables need the block.
    let job = crate::common::job_with(dir.path(), |t| {
        t.replace("  - rejects\n", "  - rejects\n  - predictions\n")
    });
    let output = segments(
        dir.path(),
        &[
            "validate",
            "--job",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`predictions` needs a `predict:` block"),
        "{stderr}"
    );
}

/// `segments generate --process btyd` draws from known BG/NBD and
/// Gamma-Gamma parameters; the published `model_parameters` of a run with
/// `time_unit: days` recover them: BG/NBD within 12% (sampling error of
/// 20,000 customers, plus the purchase-day aggregation that biases α up by
/// about (r + 1) / (2α) = 2%), Gamma-Gamma within 10%.
#[test]
fn generated_btyd_data_gives_back_its_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let bad = segments(
        dir.path(),
        &["generate", "--process", "btyd", "--bgnbd", "0.6,40,0.9"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("give 4 positive numbers"));
    crate::common::segments_ok(
        dir.path(),
        &[
            "generate",
            "--process",
            "btyd",
            "--customers",
            "20000",
            "--months",
            "24",
            "--seed",
            "4",
            "--bgnbd",
            "0.6,40,0.9,4",
            "--gamma-gamma",
            "4,3,60",
            "--out",
            "data",
        ],
    );
    let config = write_config(
        dir.path(),
        &dir.path().join("data/transactions"),
        &dir.path().join("warehouse"),
    );
    let job = predictions_job(dir.path());
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("time_unit: weeks ", "time_unit: days ");
    std::fs::write(&job, text).unwrap();
    run(dir.path(), &job, &config, "2025-12");
    let parameters = one(read_parquet(&table_file(
        &dir.path().join("warehouse"),
        "rfm_with_predictions",
        "model_parameters",
        "2025-12",
    )));
    let value = |model: &str, name: &str| -> f64 {
        (0..parameters.num_rows())
            .find(|&i| {
                parameters.column(0).as_string::<i32>().value(i) == model
                    && parameters.column(1).as_string::<i32>().value(i) == name
            })
            .map(|i| parameters.column(2).as_primitive::<Float64Type>().value(i))
            .unwrap_or_else(|| panic!("no {model}.{name}"))
    };
    for (name, known) in [("r", 0.6), ("alpha", 40.0), ("a", 0.9), ("b", 4.0)] {
        within(name, value("bgnbd", name), known, 0.12);
    }
    for (name, known) in [("p", 4.0), ("q", 3.0), ("gamma", 60.0)] {
        within(name, value("gamma_gamma", name), known, 0.10);
    }
}

/// A one-time buyer (no repeat purchase): under the MBG/NBD fitted on CDNOW,
/// P(alive) is below 1 and falls with the time since the purchase; under the
/// BG/NBD it is 1 (the model's documented blind spot), and a customer with
/// one repeat purchase has P(alive) < 1, falling with the time since it.
#[test]
fn p_alive_of_a_one_time_buyer_falls_with_time() {
    let summaries: Vec<Summary> = cdnow()
        .iter()
        .map(|&(x, t_x, t, _)| Summary { x, t_x, t })
        .collect();
    let modified = bgnbd::fit(&summaries, Variant::Modified).unwrap().params;
    let plain = bgnbd::fit(&summaries, Variant::BgNbd).unwrap().params;
    let mut previous = 1.0;
    for weeks in [1.0, 5.0, 10.0, 20.0, 39.0, 78.0] {
        let once = Summary {
            x: 0,
            t_x: 0.0,
            t: weeks,
        };
        let p = modified.p_alive(&once);
        assert!(p < previous, "{weeks} weeks: {p} ≥ {previous}");
        previous = p;
        assert_eq!(plain.p_alive(&once), 1.0);
    }
    let mut previous = 1.0;
    for gap in [1.0, 5.0, 10.0, 20.0, 39.0] {
        let p = plain.p_alive(&Summary {
            x: 1,
            t_x: 2.0,
            t: 2.0 + gap,
        });
        assert!(p < previous, "{gap} weeks since: {p} ≥ {previous}");
        previous = p;
    }
    eprintln!("MBG/NBD on CDNOW: {modified:?}");
}

/// A period whose customers never came back cannot support the models:
/// exit 3, nothing published, and the message says what to do.
#[test]
fn no_repeat_purchase_is_a_data_error_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let day = 86_400_000_000i64;
    let jan = 1_704_067_200_000_000i64; // 2024-01-01T00:00:00Z
    crate::common::write_transactions(
        &data,
        &[
            (Some("A"), "o1", jan + 2 * day, 1000),
            (Some("B"), "o2", jan + 5 * day, 2000),
            (Some("C"), "o3", jan + 9 * day, 1500),
        ],
    );
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    let job = predictions_job(dir.path());
    let output = segments(
        dir.path(),
        &[
            "run",
            "--job",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-01",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("no customer made a repeat purchase")
            && stderr.contains("run the job from a later period"),
        "{stderr}"
    );
    assert!(crate::common::published_files(&warehouse).is_empty());
}
