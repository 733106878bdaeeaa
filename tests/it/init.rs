//! `segments init`: from a retailer's own export to a published period,
//! editing no code. The export is French (`;`, decimal comma, Latin-1,
//! dd/mm/yyyy, column names with accents and spaces) with a separate
//! customer file; the expected segments are worked out by hand below.

use std::path::Path;

use crate::common::segments;

fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(c as u32).unwrap())
        .collect()
}

fn write_exports(dir: &Path) {
    std::fs::create_dir_all(dir.join("exports")).unwrap();
    std::fs::write(
        dir.join("exports/ventes.csv"),
        latin1(
            "N° client;N° commande;Date achat;Montant TTC;Mode paiement\n\
             C1;T1;03/06/2024 10:00;600,00;CB\n\
             C2;T2;14/06/2024 11:00;50,00;Espèces\n\
             C3;T3;20/05/2024 09:30;120,00;CB\n\
             C4;T4;15/01/2024 12:00;80,00;CB\n\
             C5;T5;02/06/2024 15:00;30,00;CB\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("exports/clients.csv"),
        latin1(
            "Identifiant client;Région;Ville;Tranche âge;Marché;Fidélité\n\
             C1;Île-de-France;Paris;25-34;b2c;oui\n\
             C2;Occitanie;Toulouse;55-64;b2c;non\n\
             C3;Bretagne;Rennes;35-44;b2b;non\n\
             C4;Île-de-France;Versailles;65+;b2c;oui\n",
        ),
    )
    .unwrap();
}

fn text(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_french_export_goes_from_init_to_a_published_profile_period() {
    let dir = tempfile::tempdir().unwrap();
    write_exports(dir.path());
    let out = segments(
        dir.path(),
        &[
            "init",
            "projet",
            "--from",
            "exports/ventes.csv",
            "--customers",
            "exports/clients.csv",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for guess in [
        "delimiter \";\"",
        "decimal comma",
        "timestamps written %d/%m/%Y %H:%M",
        "encoding latin-1",
        "transactions.customer_id: column \"N° client\"",
        "transactions.amount: column \"Montant TTC\"",
        "customers.region: column \"Région\"",
        "customers.age_band: column \"Tranche âge\"",
        "ok —",
    ] {
        assert!(stdout.contains(guess), "expected {guess:?} in:\n{stdout}");
    }
    let project = dir.path().join("projet");
    for file in [
        "config/local.yaml",
        "jobs/rfm_monthly.yaml",
        "jobs/profile_segments.yaml",
        "sql/customer_profiles.sql",
        "schemas/config.schema.json",
        ".gitignore",
    ] {
        assert!(project.join(file).is_file(), "{file} written");
    }

    // The project runs as written (from its folder, as the output says);
    // five customers move by more than the change gates allow.
    let out = segments(
        &project,
        &[
            "run",
            "--job",
            "jobs/profile_segments.yaml",
            "--period",
            "2024-06",
            "--allow-gate",
            "active_customers_change",
            "--allow-gate",
            "revenue_change",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    // By hand, as of 2024-06-30: C1 spent 600,00 in Île-de-France (high);
    // C2 is 55-64 and bought on 14/06; C3 is a business account; C4 (65+)
    // last bought on 15/01, 167 days before, so neither senior-active nor
    // lapsing; C5 is not in the customer file (region unknown) and bought
    // on 02/06.
    let segments_by_customer: Vec<(String, String)> =
        crate::jobs::snapshot(&project.join("warehouse"), "profile_segments", "2024-06")
            .into_iter()
            .map(|(customer, row)| (customer, row.segment))
            .collect();
    let expected: Vec<(String, String)> = [
        ("C1", "paris_region_high_value"),
        ("C2", "seniors_active"),
        ("C3", "b2b_accounts"),
        ("C4", "active"),
        ("C5", "active"),
    ]
    .iter()
    .map(|(c, s)| (c.to_string(), s.to_string()))
    .collect();
    assert_eq!(segments_by_customer, expected);
}

#[test]
fn an_ambiguous_date_format_is_left_to_the_user() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sales.csv"),
        "customer,order,date,total\nc1,o1,03/04/2024,10.5\nc2,o2,05/06/2024,7\n",
    )
    .unwrap();
    let out = segments(dir.path(), &["init", "p", "--from", "sales.csv"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let config = std::fs::read_to_string(dir.path().join("p/config/local.yaml")).unwrap();
    // Both candidates, commented out; neither chosen.
    assert!(
        config.contains("      # date_format: \"%d/%m/%Y\""),
        "{config}"
    );
    assert!(
        config.contains("      # date_format: \"%m/%d/%Y\""),
        "{config}"
    );
    assert!(!config.contains("\n      date_format:"), "{config}");
    assert!(
        stdout.contains("uncomment the right `date_format`"),
        "listed under what to check:\n{stdout}"
    );
}

#[test]
fn init_refuses_a_used_folder_and_an_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    write_exports(dir.path());
    std::fs::create_dir_all(dir.path().join("used")).unwrap();
    std::fs::write(dir.path().join("used/notes.txt"), "mine").unwrap();
    let out = segments(
        dir.path(),
        &["init", "used", "--from", "exports/ventes.csv"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    assert!(text(&out).1.contains("not empty"), "{}", text(&out).1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("used/notes.txt")).unwrap(),
        "mine",
        "nothing overwritten"
    );
    let out = segments(
        dir.path(),
        &["init", "fresh", "--from", "exports/missing.csv"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out).1);
    assert!(text(&out).1.contains("missing.csv"), "{}", text(&out).1);
    assert!(!dir.path().join("fresh").exists(), "nothing written");
}
