//! How `segments generate` writes a month: the lines sorted by time, as
//! Arrow columns, into one Parquet file per month.

use super::*;

/// Turns a month's lines into a Parquet file.
pub(super) struct MonthWriter {
    pub(super) schema: SchemaRef,
    pub(super) properties: WriterProperties,
    pub(super) id_digits: usize,
}

impl MonthWriter {
    /// `contacts`: customers and visitors, for the width of the ids.
    pub(super) fn new(contacts: u64) -> Self {
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            // Unique values: a dictionary would only be built to be dropped.
            .set_column_dictionary_enabled(ColumnPath::from("order_id"), false)
            .set_column_dictionary_enabled(ColumnPath::from("ordered_at"), false)
            .set_column_dictionary_enabled(ColumnPath::from("occurred_at"), false)
            // Too many distinct ids for a dictionary page: the dictionary
            // would overflow and be dropped in all but small files, after
            // costing a hash lookup per value.
            .set_column_dictionary_enabled(ColumnPath::from("customer_id"), false)
            .build();
        Self {
            schema: transactions_schema(),
            properties,
            id_digits: contacts.to_string().len().max(MIN_ID_DIGITS),
        }
    }

    /// Writes `lines` (sorted) to `dir/part-0.parquet`, a reader never sees it half-written.
    pub(super) fn write(
        &self,
        dir: &Path,
        lines: &[Line],
        tables: &Tables,
    ) -> Result<PathBuf, GenerateError> {
        let path = dir.join("part-0.parquet");
        let batches = lines
            .chunks(BATCH_ROWS)
            .map(|chunk| self.batch(chunk, tables));
        write_parquet(&path, self.schema.clone(), &self.properties, batches)?;
        Ok(path)
    }

    pub(super) fn batch(&self, lines: &[Line], tables: &Tables) -> Result<RecordBatch, ArrowError> {
        let rows = lines.len();
        let mut customer_ids =
            Utf8Column::with_capacity(rows, rows * (self.id_digits + 1) + Label::SIZE);
        let mut order_ids = Utf8Column::with_capacity(rows, rows * 16);
        // Labels are copied 16 bytes at a time: room for the last one's padding.
        let mut product_ids = Utf8Column::with_capacity(rows, rows * 5 + Label::SIZE);
        let mut categories = Utf8Column::with_capacity(rows, rows * 11 + Label::SIZE);
        let mut channels = Utf8Column::with_capacity(rows, rows * 5 + Label::SIZE);
        let mut stores = Utf8Column::with_capacity(rows, rows * 4 + Label::SIZE);
        let mut ordered_at = Vec::with_capacity(rows);
        let mut amounts = Vec::with_capacity(rows);
        let mut quantities = Vec::with_capacity(rows);
        let mut discounts = Vec::with_capacity(rows);
        // Ids are written into reused buffers, and only when they change
        // (lines of one order are next to each other).
        let mut customer_digits = vec![b'0'; 1 + self.id_digits];
        customer_digits[0] = b'C';
        let mut customer_id = Label::new("");
        let mut last_customer = ANONYMOUS;
        // `O` + YYYYMM + 9-digit counter.
        let mut order_id = [b'0'; 16];
        order_id[0] = b'O';
        let mut last_order = (0, u32::MAX);
        for line in lines {
            if line.customer == ANONYMOUS {
                customer_ids.push_null();
            } else {
                if line.customer != last_customer {
                    write_digits(&mut customer_digits[1..], u64::from(line.customer));
                    customer_id = Label::from_bytes(&customer_digits);
                    last_customer = line.customer;
                }
                customer_ids.push_label(&customer_id);
            }
            if (line.order_month, line.order_seq) != last_order {
                write_digits(&mut order_id[1..7], u64::from(line.order_month));
                write_digits(&mut order_id[7..], u64::from(line.order_seq));
                last_order = (line.order_month, line.order_seq);
            }
            order_ids.push_fixed(&order_id);
            ordered_at.push(line.ts);
            amounts.push(i128::from(line.amount));
            quantities.push(i64::from(line.quantity));
            product_ids.push_label(&tables.product_ids[line.product as usize]);
            let category = tables.product_category[line.product as usize];
            categories.push_label(&CATEGORY_LABELS[category as usize]);
            channels.push_label(&CHANNEL_LABELS[line.channel as usize]);
            if line.store == NO_STORE {
                stores.push_null();
            } else {
                stores.push_label(&tables.store_ids[line.store as usize]);
            }
            discounts.push(i128::from(line.discount));
        }
        let columns: Vec<ArrayRef> = vec![
            customer_ids.finish()?,
            order_ids.finish()?,
            Arc::new(TimestampMicrosecondArray::from(ordered_at).with_timezone("UTC")),
            Arc::new(Decimal128Array::from(amounts).with_precision_and_scale(18, 2)?),
            Arc::new(Int64Array::from(quantities)),
            product_ids.finish()?,
            categories.finish()?,
            channels.finish()?,
            stores.finish()?,
            Arc::new(Decimal128Array::from(discounts).with_precision_and_scale(18, 2)?),
        ];
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

/// A UTF-8 column built from bytes: checked once when finished rather than value by value.
pub(super) struct Utf8Column {
    pub(super) offsets: Vec<i32>,
    pub(super) values: Vec<u8>,
    pub(super) nulls: NullBufferBuilder,
}

impl Utf8Column {
    pub(super) fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            offsets,
            values: Vec::with_capacity(bytes),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    pub(super) fn push(&mut self, value: &[u8]) {
        self.values.extend_from_slice(value);
        self.offsets.push(self.values.len() as i32);
        self.nulls.append_non_null();
    }

    /// [`Self::push`] of a value of `N` bytes, copied without a call to `memcpy`.
    pub(super) fn push_fixed<const N: usize>(&mut self, value: &[u8; N]) {
        self.values.extend_from_slice(value);
        self.offsets.push(self.values.len() as i32);
        self.nulls.append_non_null();
    }

    /// [`Self::push`] of a label: a fixed-size copy of its padding too,
    /// which the next value overwrites.
    pub(super) fn push_label(&mut self, label: &Label) {
        let end = self.values.len() + label.len;
        self.values.extend_from_slice(&label.bytes);
        self.values.truncate(end);
        self.offsets.push(end as i32);
        self.nulls.append_non_null();
    }

    pub(super) fn push_null(&mut self) {
        self.offsets.push(self.values.len() as i32);
        self.nulls.append_null();
    }

    pub(super) fn finish(mut self) -> Result<ArrayRef, ArrowError> {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        let array =
            StringArray::try_new(offsets, Buffer::from_vec(self.values), self.nulls.finish())?;
        Ok(Arc::new(array))
    }
}

/// A short string (an id, a category, a channel) padded to a fixed size, so
/// that columns copy it without a call to `memcpy`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Label {
    pub(super) bytes: [u8; Label::SIZE],
    pub(super) len: usize,
}

impl Label {
    pub(super) const SIZE: usize = 16;

    /// Panics if `value` is longer than [`Label::SIZE`] bytes.
    pub(super) const fn from_bytes(value: &[u8]) -> Self {
        assert!(value.len() <= Self::SIZE, "a label is at most 16 bytes");
        let mut bytes = [0; Self::SIZE];
        let mut i = 0;
        while i < value.len() {
            bytes[i] = value[i];
            i += 1;
        }
        Self {
            bytes,
            len: value.len(),
        }
    }

    pub(super) const fn new(value: &str) -> Self {
        Self::from_bytes(value.as_bytes())
    }

    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).expect("labels are made from strings")
    }
}

/// The names of `CATEGORIES` and `CHANNELS`, as labels.
pub(super) const CATEGORY_LABELS: [Label; CATEGORIES.len()] = {
    let mut labels = [Label::new(""); CATEGORIES.len()];
    let mut i = 0;
    while i < labels.len() {
        labels[i] = Label::new(CATEGORIES[i].0);
        i += 1;
    }
    labels
};
pub(super) const CHANNEL_LABELS: [Label; CHANNELS.len()] = {
    let mut labels = [Label::new(""); CHANNELS.len()];
    let mut i = 0;
    while i < labels.len() {
        labels[i] = Label::new(CHANNELS[i]);
        i += 1;
    }
    labels
};

/// Writes `batches` to the Parquet file `path` through a hidden temporary
/// file and a rename, so a reader never sees a half-written file.
pub(super) fn write_parquet(
    path: &Path,
    schema: SchemaRef,
    properties: &WriterProperties,
    batches: impl IntoIterator<Item = Result<RecordBatch, ArrowError>>,
) -> Result<(), GenerateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp"));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let file = File::create(&temporary).map_err(io(&temporary))?;
    let parquet = |source| GenerateError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let mut writer = ArrowWriter::try_new(
        BufWriter::with_capacity(1 << 20, file),
        schema,
        Some(properties.clone()),
    )
    .map_err(parquet)?;
    for batch in batches {
        writer.write(&batch?).map_err(parquet)?;
    }
    let mut buffered = writer.into_inner().map_err(parquet)?;
    buffered.flush().map_err(io(&temporary))?;
    drop(buffered);
    fs::rename(&temporary, path).map_err(io(path))?;
    Ok(())
}

/// The items of `parts`, one after the other, sorted by `less`, which must
/// order by `ts` first; ties keep their order. A stable counting sort by `ts`
/// into buckets of a few items, then an insertion sort inside each
/// bucket: much cheaper than a comparison sort, and the items end up side by
/// side for the writer.
pub(super) fn sort_by_time<T: Copy>(
    parts: &[&[T]],
    ts: impl Fn(&T) -> i64,
    less: impl Fn(&T, &T) -> bool,
) -> Vec<T> {
    let mut sorted = Vec::new();
    sort_by_time_into(parts, ts, less, &mut sorted);
    sorted
}

/// [`sort_by_time`] into `sorted`, whose memory is reused.
pub(super) fn sort_by_time_into<T: Copy>(
    parts: &[&[T]],
    ts: impl Fn(&T) -> i64,
    less: impl Fn(&T, &T) -> bool,
    sorted: &mut Vec<T>,
) {
    sorted.clear();
    let items = || parts.iter().flat_map(|part| part.iter());
    let Some(first) = items().next() else {
        return;
    };
    let count = items().count();
    let (low, high) = items().fold((ts(first), ts(first)), |(low, high), item| {
        (low.min(ts(item)), high.max(ts(item)))
    });
    // Two to four items a bucket on average, each bucket a power-of-two span
    // of time, so that finding an item's bucket is a shift rather than a
    // 64-bit division. Any bucketing monotone in `ts` sorts alike: ties keep
    // their order whatever the buckets.
    let target = (count / 4).clamp(1, 1 << 24) as u64;
    let shift = ((high - low) as u64 / target).checked_ilog2().unwrap_or(0);
    let buckets = ((high - low) as u64 >> shift) as usize + 1;
    let bucket = |item: &T| ((ts(item) - low) as u64 >> shift) as usize;
    let mut bounds = vec![0u32; buckets + 1];
    for item in items() {
        bounds[bucket(item) + 1] += 1;
    }
    for b in 1..=buckets {
        bounds[b] += bounds[b - 1];
    }
    let mut next = bounds.clone();
    sorted.resize(count, *first);
    for item in items() {
        let slot = &mut next[bucket(item)];
        sorted[*slot as usize] = *item;
        *slot += 1;
    }
    for b in 0..buckets {
        let bucket = &mut sorted[bounds[b] as usize..bounds[b + 1] as usize];
        for j in 1..bucket.len() {
            let item = bucket[j];
            let mut k = j;
            while k > 0 && less(&item, &bucket[k - 1]) {
                bucket[k] = bucket[k - 1];
                k -= 1;
            }
            bucket[k] = item;
        }
    }
}

/// Maps an I/O error to one that names `path`.
pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenerateError + use<> {
    let path = path.to_path_buf();
    move |source| GenerateError::Io { path, source }
}

/// Writes `value` as zero-padded decimal digits filling `digits`.
pub(super) fn write_digits(digits: &mut [u8], mut value: u64) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}
