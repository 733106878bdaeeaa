//! The months of `segments generate` side by side: one worker per core,
//! each month drawn from its own seeds and handed over in month order, so the
//! files are the same bytes whatever the number of threads.

use super::*;

/// Threads that generate months side by side: one per core.
pub(super) fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(super) fn generate_checked(
    options: &GenerateOptions,
    last: Period,
    tables: Tables,
    threads: usize,
) -> Result<GenerateReport, GenerateError> {
    let threads = threads.clamp(1, options.months as usize);
    let profiles = draw_all(options.customers as u32, threads, |c| {
        Profile::draw(options.seed, c, options.months, &tables)
    });
    let visitor_count = if options.events {
        options.customers / events::CUSTOMERS_PER_VISITOR
    } else {
        0
    };
    let visitors = draw_all(visitor_count as u32, threads, |v| {
        events::Visitor::draw(options.seed, v, options.months)
    });
    // Customers and visitors share one id space, so ids have one width.
    let writer = MonthWriter::new(options.customers + visitor_count);
    let mut report = GenerateReport {
        visitors: visitor_count,
        ..GenerateReport::default()
    };
    let (_, products) = calendar::write_products(&options.out_dir, &tables, &writer.properties)?;
    report.products = products;
    // The year before the first month too: jobs look back at last year's sales.
    let (_, sales) = calendar::write_sales_calendar(
        &options.out_dir,
        options.start.year() - 1,
        last.year(),
        &writer.properties,
    )?;
    report.sales = sales;
    let (_, customer_rows) = super::customers::write_customers(
        options,
        &profiles,
        visitor_count,
        writer.id_digits,
        &writer.properties,
    )?;
    report.customer_rows = customer_rows;

    let months = Months {
        options,
        horizon: micros_at(last.end()),
        profiles: &profiles,
        visitors: &visitors,
        tables: &tables,
        writer: &writer,
    };
    for month in months.run(threads)? {
        report.rows += month.rows;
        report.orders += month.orders;
        report.anonymous_rows += month.anonymous_rows;
        report.refund_rows += month.refund_rows;
        report.duplicate_rows += month.duplicate_rows;
        report.late_rows += month.late_rows;
        report.files.push(month.file);
        if let Some((rows, file)) = month.events {
            report.event_rows += rows;
            report.event_files.push(file);
        }
    }
    Ok(report)
}

/// `f(0..count)` in order, computed in `threads` chunks side by side.
pub(super) fn draw_all<T: Send>(count: u32, threads: usize, f: impl Fn(u32) -> T + Sync) -> Vec<T> {
    let chunk = count.div_ceil(threads as u32).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..count)
            .step_by(chunk as usize)
            .map(|low| {
                let high = low.saturating_add(chunk).min(count);
                scope.spawn(move || (low..high).map(f).collect::<Vec<T>>())
            })
            .collect();
        let mut all = Vec::with_capacity(count as usize);
        for part in parts {
            match part.join() {
                Ok(part) => all.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    })
}

/// What one month wrote.
pub(super) struct MonthOutput {
    pub(super) rows: u64,
    pub(super) orders: u64,
    pub(super) anonymous_rows: u64,
    pub(super) refund_rows: u64,
    /// Copies of lines written twice (see `defects`).
    pub(super) duplicate_rows: u64,
    /// Lines of the month moved to the next month's file.
    pub(super) late_rows: u64,
    pub(super) file: PathBuf,
    /// Events written and their file, with events.
    pub(super) events: Option<(u64, PathBuf)>,
}

/// Everything the months share, read-only.
pub(super) struct Months<'a> {
    pub(super) options: &'a GenerateOptions,
    /// End of the last generated month: later refunds are dropped.
    pub(super) horizon: i64,
    pub(super) profiles: &'a [Profile],
    pub(super) visitors: &'a [events::Visitor],
    pub(super) tables: &'a Tables,
    pub(super) writer: &'a MonthWriter,
}

impl Months<'_> {
    /// Generates and writes every month, `threads` months at a time. A month
    /// draws its lines, hands the refunds dated in the next month to that
    /// month's thread, takes the refunds of the month before, then sorts and
    /// writes. The outputs are in month order; the error is the first month's.
    pub(super) fn run(&self, threads: usize) -> Result<Vec<MonthOutput>, GenerateError> {
        let count = self.options.months as usize;
        let carried = Handoff::new(count);
        carried.put(0, Vec::new());
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let outputs: Mutex<Vec<Option<Result<MonthOutput, GenerateError>>>> =
            Mutex::new((0..count).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    // Reused from month to month: fresh memory costs a page fault per 4 KiB.
                    let (mut buffer, mut sorted) = (Vec::new(), Vec::new());
                    while !failed.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= count {
                            break;
                        }
                        // If drawing panics, the next month's thread must not wait forever.
                        let promise = Promise {
                            handoff: &carried,
                            slot: index + 1,
                        };
                        let ctx = MonthContext::new(
                            self.options.start.add_months(index as i32),
                            index as u32,
                            self.horizon,
                        );
                        let mut drawn = self.draw(&ctx, std::mem::take(&mut buffer));
                        let late_rows = if self.options.defects {
                            defects::move_late_lines(
                                self.options.seed,
                                &ctx,
                                &mut drawn.lines,
                                &mut drawn.next_month,
                            )
                        } else {
                            0
                        };
                        promise.fulfil(drawn.next_month);
                        let Some(refunds) = carried.take(index) else {
                            break;
                        };
                        let output = self
                            .write(&ctx, &refunds, &drawn.lines, drawn.next_seq, &mut sorted)
                            .map(|output| MonthOutput {
                                late_rows,
                                ..output
                            });
                        buffer = drawn.lines;
                        if output.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        lock(&outputs)[index] = Some(output);
                    }
                });
            }
        });
        let outputs = outputs.into_inner().unwrap_or_else(PoisonError::into_inner);
        let mut months = Vec::with_capacity(count);
        for output in outputs {
            match output {
                Some(output) => months.push(output?),
                None => break,
            }
        }
        Ok(months)
    }

    /// The lines of the customers active in the month, from their own seeds:
    /// everything but the refunds carried from the month before.
    /// `buffer`: a vector to reuse for the lines.
    pub(super) fn draw(&self, ctx: &MonthContext, mut buffer: Vec<Line>) -> MonthLines {
        // Room for the lines of a busy month, so that the vector seldom grows.
        let active = self
            .profiles
            .iter()
            .filter(|p| p.active_in(ctx.index))
            .count();
        buffer.clear();
        buffer.reserve(active * 4);
        let mut month = MonthLines {
            lines: buffer,
            next_month: Vec::new(),
            next_seq: 0,
        };
        for (c, profile) in self.profiles.iter().enumerate() {
            if profile.active_in(ctx.index) {
                customer_month(
                    self.options.seed,
                    c as u32,
                    profile,
                    ctx,
                    self.tables,
                    &mut month,
                );
            }
        }
        month
    }

    /// Sorts (into `sorted`) and writes the month's lines, the refunds carried
    /// from the month before then the month's own `drawn` lines, and its events.
    pub(super) fn write(
        &self,
        ctx: &MonthContext,
        carried: &[Line],
        drawn: &[Line],
        orders: u32,
        sorted: &mut Vec<Line>,
    ) -> Result<MonthOutput, GenerateError> {
        let period = self.options.start.add_months(ctx.index as i32);
        // The carried refunds have no events.
        let events = self.options.events.then(|| {
            events::month_events(
                self.options.seed,
                self.profiles,
                self.visitors,
                ctx,
                self.tables,
                drawn,
            )
        });
        sort_by_time_into(
            &[carried, drawn],
            |line| line.ts,
            |a, b| a.ts < b.ts,
            sorted,
        );
        let duplicate_rows = if self.options.defects {
            defects::duplicate_lines(self.options.seed, ctx, sorted)
        } else {
            0
        };
        let lines = &sorted[..];
        let mut output = MonthOutput {
            rows: lines.len() as u64,
            orders: u64::from(orders),
            anonymous_rows: 0,
            refund_rows: 0,
            duplicate_rows,
            late_rows: 0,
            file: PathBuf::new(),
            events: None,
        };
        for line in lines {
            output.anonymous_rows += u64::from(line.customer == ANONYMOUS);
            output.refund_rows += u64::from(line.amount < 0);
        }
        let dir = self
            .options
            .out_dir
            .join("transactions")
            .join(format!("month={period}"));
        output.file = self.writer.write(&dir, lines, self.tables)?;
        if let Some(events) = events {
            let dir = self
                .options
                .out_dir
                .join("events")
                .join(format!("month={period}"));
            let file = events::write_events(
                &dir,
                &events,
                self.tables,
                self.writer.id_digits,
                &self.writer.properties,
            )?;
            output.events = Some((events.len() as u64, file));
        }
        Ok(output)
    }
}

/// The refunds each month takes from the month before, handed between threads.
pub(super) struct Handoff {
    /// `None` until put; `Some(None)` when the putting thread panicked.
    pub(super) slots: Mutex<Vec<Option<Option<Vec<Line>>>>>,
    pub(super) changed: Condvar,
}

impl Handoff {
    pub(super) fn new(months: usize) -> Self {
        Self {
            slots: Mutex::new(vec![None; months + 1]),
            changed: Condvar::new(),
        }
    }

    pub(super) fn set(&self, slot: usize, lines: Option<Vec<Line>>) {
        lock(&self.slots)[slot] = Some(lines);
        self.changed.notify_all();
    }

    pub(super) fn put(&self, slot: usize, lines: Vec<Line>) {
        self.set(slot, Some(lines));
    }

    /// Waits for `slot`; `None` if its thread panicked.
    pub(super) fn take(&self, slot: usize) -> Option<Vec<Line>> {
        let mut slots = lock(&self.slots);
        loop {
            if let Some(lines) = slots[slot].take() {
                return lines;
            }
            slots = self
                .changed
                .wait(slots)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A slot of a [`Handoff`] to fill; dropped unfilled (a panic), it wakes the taker.
pub(super) struct Promise<'a> {
    pub(super) handoff: &'a Handoff,
    pub(super) slot: usize,
}

impl Promise<'_> {
    pub(super) fn fulfil(self, lines: Vec<Line>) {
        self.handoff.put(self.slot, lines);
        std::mem::forget(self);
    }
}

impl Drop for Promise<'_> {
    fn drop(&mut self) {
        self.handoff.set(self.slot, None);
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
