//! What real exports carry and a clean simulation would not, written by
//! `segments generate` unless `--clean`: exact duplicate lines (a line sent
//! twice by a till or an export retried) and late lines (store lines of a
//! month's last day that reach the warehouse with the next month's file).
//! Refund lines with the sale's order id, refund orders with their own and
//! anonymous tickets are part of the simulation itself (`sampling`).
//!
//! Each month draws its defects from its own seed, after its lines, so the
//! files stay the same bytes whatever the number of threads, and `--clean`
//! gives the same lines less the defects.

use super::*;

/// Share of lines written twice: 1 in 20,000 (0.005%); an export of 16M
/// lines seen in the field had 0.002%.
pub(super) const DUPLICATE_SHARE: f64 = 0.000_05;
/// Share of the store lines of a month's last day that arrive late, in the
/// next month's file (dated in their own month).
pub(super) const LATE_SHARE: f64 = 0.05;
const STREAM_DEFECTS: u64 = 7;

fn rng(seed: u64, ctx: &MonthContext, which: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(
        seed,
        STREAM_DEFECTS,
        u64::from(ctx.index),
        which,
    ))
}

/// Moves the late lines of the month from `lines` to `next_month`; none in
/// the last generated month (there is no next file). Only store lines: the
/// web and app lines have events in their own month. Returns how many moved.
pub(super) fn move_late_lines(
    seed: u64,
    ctx: &MonthContext,
    lines: &mut Vec<Line>,
    next_month: &mut Vec<Line>,
) -> u64 {
    if ctx.end >= ctx.horizon {
        return 0;
    }
    let mut rng = rng(seed, ctx, 0);
    let last_day = ctx.end - MICROS_PER_DAY;
    let before = next_month.len();
    lines.retain(|line| {
        let late = line.channel == STORE && line.ts >= last_day && rng.random_bool(LATE_SHARE);
        if late {
            next_month.push(*line);
        }
        !late
    });
    (next_month.len() - before) as u64
}

/// Writes some of the month's `sorted` lines twice, each copy next to its
/// line (the order stays sorted by time). Returns how many copies.
pub(super) fn duplicate_lines(seed: u64, ctx: &MonthContext, sorted: &mut Vec<Line>) -> u64 {
    let mut rng = rng(seed, ctx, 1);
    let copied: Vec<usize> = (0..sorted.len())
        .filter(|_| rng.random_bool(DUPLICATE_SHARE))
        .collect();
    if copied.is_empty() {
        return 0;
    }
    let mut with_copies = Vec::with_capacity(sorted.len() + copied.len());
    let mut next = copied.iter().peekable();
    for (index, line) in sorted.iter().enumerate() {
        with_copies.push(*line);
        if next.peek() == Some(&&index) {
            with_copies.push(*line);
            next.next();
        }
    }
    *sorted = with_copies;
    copied.len() as u64
}
