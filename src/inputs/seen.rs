//! Lines seen before: a filter of row hashes shared by every partition of one
//! pass, and the aggregate that flags a line whose hash the pass has already
//! seen. It finds the candidates for exact duplicate lines inside a pass a
//! run makes anyway (the row accounting), where a grouping of every line's
//! hash took a pass and a hash table of one entry per line of its own.
//!
//! The filter is a blocked Bloom filter: each hash sets a few bits of one
//! 64-bit word, with one atomic `fetch_or`. Of two equal lines, whatever
//! the partitions and their interleaving, exactly one finds every bit of
//! its word already set by the other, so every repeated line is flagged at
//! least once beyond its first copy. A flag can also be a false positive
//! (about one line in ten thousand at the sizes below): flags are only
//! candidates, which `inputs::duplicates` then compares row by row.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, StructArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Int64Type, UInt64Type};
use datafusion::common::Result;
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use datafusion::scalar::ScalarValue;

/// Bits of the filter per expected line: with [`BITS_PER_HASH`] bits set
/// per hash, about one false positive in 10,000 lines (measured by
/// `tests::false_positives_are_rare`).
const BITS_PER_LINE: u64 = 20;
/// Bits each hash sets in its word.
const BITS_PER_HASH: u32 = 7;
/// The smallest filter (1 MiB): small inputs cost nothing to over-size.
const MIN_WORDS: u64 = (1 << 20) / 8;

/// The shared filter of the hashes one pass has seen.
#[derive(Debug)]
pub struct SeenLines {
    words: Vec<AtomicU64>,
    /// The filter's bytes, held in the memory pool while it lives.
    _reservation: Option<MemoryReservation>,
}

impl SeenLines {
    /// A filter for about `expected_lines` lines, its memory reserved in
    /// `pool` (halved until the pool grants it, down to the smallest
    /// filter: a smaller one only flags more lines for the exact check).
    pub fn new(expected_lines: u64, pool: Option<&Arc<dyn MemoryPool>>) -> Self {
        let mut words = (expected_lines.saturating_mul(BITS_PER_LINE) / 64).max(MIN_WORDS);
        let reservation = pool.map(|pool| {
            let reservation = MemoryConsumer::new("duplicate line filter").register(pool);
            while words > MIN_WORDS && reservation.try_grow(words as usize * 8).is_err() {
                words /= 2;
            }
            if reservation.size() == 0 {
                // The smallest filter is taken whatever the pool says: 1 MiB.
                reservation.grow(words as usize * 8);
            }
            reservation
        });
        SeenLines {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            _reservation: reservation,
        }
    }

    /// Record `hash`; true when every bit it sets was already set (the hash,
    /// or rarely another, was seen before).
    pub fn insert(&self, hash: u64) -> bool {
        // The word from the high bits (multiply-shift, no modulo), the bits
        // from a remix of the whole hash, six bits per position.
        let word = ((u128::from(hash) * self.words.len() as u128) >> 64) as usize;
        let mut remixed = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        let mut mask = 0u64;
        for _ in 0..BITS_PER_HASH {
            mask |= 1 << (remixed & 63);
            remixed >>= 6;
        }
        let before = self.words[word].fetch_or(mask, Ordering::Relaxed);
        before & mask == mask
    }

    /// Bytes the filter holds.
    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }
}

/// The lines a pass flagged as seen before: their hashes and instants
/// (`ordered_at` in microseconds since the epoch).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flagged {
    pub hashes: Vec<u64>,
    pub instants: Vec<i64>,
}

impl Flagged {
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Add the flags of one value of [`repeated_lines`] (a list of
    /// `{hash, instant}`).
    pub fn extend_from(&mut self, value: &dyn Array, row: usize) {
        let lists = value.as_list::<i32>();
        if lists.is_null(row) {
            return;
        }
        let entries = lists.value(row);
        let entries = entries.as_struct();
        let hashes = entries.column(0).as_primitive::<UInt64Type>();
        let instants = entries.column(1).as_primitive::<Int64Type>();
        self.hashes.extend(hashes.values().iter());
        self.instants.extend(instants.values().iter());
    }
}

/// The aggregate `repeated_lines(hash, instant)`: the `{hash, instant}` of
/// every row of the group whose hash `filter` had already seen (rows with
/// a null hash are not looked at). One filter per pass: every group and
/// partition of the query records into it.
pub fn repeated_lines(filter: Arc<SeenLines>) -> AggregateUDF {
    AggregateUDF::from(RepeatedLines {
        filter,
        signature: Signature::any(2, Volatility::Volatile),
    })
}

/// The name plans carry for [`repeated_lines`].
pub const REPEATED_LINES: &str = "repeated_lines";

fn entry_fields() -> Fields {
    Fields::from(vec![
        Field::new("hash", DataType::UInt64, false),
        Field::new("instant", DataType::Int64, false),
    ])
}

fn list_of(field: Field) -> DataType {
    DataType::List(Arc::new(field))
}

#[derive(Debug)]
struct RepeatedLines {
    filter: Arc<SeenLines>,
    signature: Signature,
}

// One function per filter: two are equal when they record into the same one.
impl PartialEq for RepeatedLines {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.filter, &other.filter)
    }
}
impl Eq for RepeatedLines {}
impl std::hash::Hash for RepeatedLines {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.filter) as usize).hash(state);
    }
}

impl AggregateUDFImpl for RepeatedLines {
    fn name(&self) -> &str {
        REPEATED_LINES
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(list_of(Field::new_struct("item", entry_fields(), true)))
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(RepeatedLinesAccumulator {
            filter: self.filter.clone(),
            flagged: Flagged::default(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[hashes]", args.name),
                list_of(Field::new_list_field(DataType::UInt64, true)),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[instants]", args.name),
                list_of(Field::new_list_field(DataType::Int64, true)),
                true,
            )),
        ])
    }
}

#[derive(Debug)]
struct RepeatedLinesAccumulator {
    filter: Arc<SeenLines>,
    flagged: Flagged,
}

/// Microseconds since the epoch of a timestamp column of any unit.
fn instants_of(array: &ArrayRef) -> Result<Int64Array> {
    let as_micros = datafusion::arrow::compute::cast(
        array,
        &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None),
    )?;
    Ok(
        datafusion::arrow::compute::cast(&as_micros, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone(),
    )
}

impl Accumulator for RepeatedLinesAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let hashes = values[0].as_primitive::<UInt64Type>();
        let instants = instants_of(&values[1])?;
        for row in 0..hashes.len() {
            if hashes.is_valid(row) && self.filter.insert(hashes.value(row)) {
                self.flagged.hashes.push(hashes.value(row));
                // A line without an instant is a reject: it has no hash.
                self.flagged.instants.push(instants.value(row));
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let hashes = states[0].as_list::<i32>();
        let instants = states[1].as_list::<i32>();
        for row in 0..hashes.len() {
            if hashes.is_null(row) {
                continue;
            }
            let row_hashes = hashes.value(row);
            let row_instants = instants.value(row);
            self.flagged
                .hashes
                .extend(row_hashes.as_primitive::<UInt64Type>().values().iter());
            self.flagged
                .instants
                .extend(row_instants.as_primitive::<Int64Type>().values().iter());
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let hashes = UInt64Array::from(std::mem::take(&mut self.flagged.hashes));
        let instants = Int64Array::from(std::mem::take(&mut self.flagged.instants));
        Ok(vec![
            SingleRowListArrayBuilder::new(Arc::new(hashes)).build_list_scalar(),
            SingleRowListArrayBuilder::new(Arc::new(instants)).build_list_scalar(),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let entries = StructArray::try_new(
            entry_fields(),
            vec![
                Arc::new(UInt64Array::from(std::mem::take(&mut self.flagged.hashes))),
                Arc::new(Int64Array::from(std::mem::take(&mut self.flagged.instants))),
            ],
            None,
        )?;
        Ok(SingleRowListArrayBuilder::new(Arc::new(entries))
            .with_field(&Field::new_struct("item", entry_fields(), true))
            .build_list_scalar())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.flagged.hashes.capacity() * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_seen_before_is_flagged_and_a_new_one_is_not() {
        let filter = SeenLines::new(1000, None);
        assert!(!filter.insert(42));
        assert!(filter.insert(42));
        assert!(filter.insert(42));
        assert!(!filter.insert(43));
    }

    #[test]
    fn false_positives_are_rare() {
        // Hashes as row_hash gives them: well mixed 64-bit values.
        let lines = 1_000_000u64;
        let filter = SeenLines::new(lines, None);
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut flagged = 0;
        for _ in 0..lines {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            flagged += u64::from(filter.insert(z ^ (z >> 31)));
        }
        // Every hash is distinct: each flag is a false positive.
        assert!(
            flagged < lines / 2_000,
            "{flagged} false positives in {lines} lines"
        );
    }

    #[test]
    fn equal_lines_racing_in_two_threads_are_flagged_once() {
        // Both threads insert the same hashes: for each, exactly one sees it
        // as seen before, whatever the interleaving.
        for _ in 0..20 {
            let filter = Arc::new(SeenLines::new(100_000, None));
            let hashes: Vec<u64> = (0..100_000u64)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 7))
                .collect();
            let flagged: u64 = std::thread::scope(|scope| {
                let runs: Vec<_> = (0..2)
                    .map(|_| {
                        let filter = filter.clone();
                        let hashes = &hashes;
                        scope.spawn(move || {
                            hashes.iter().filter(|h| filter.insert(**h)).count() as u64
                        })
                    })
                    .collect();
                runs.into_iter().map(|r| r.join().unwrap()).sum()
            });
            // At least one per hash (the second copy); more only by false positives.
            assert!(flagged >= 100_000, "{flagged}");
            assert!(flagged < 100_000 + 100, "{flagged}");
        }
    }
}
