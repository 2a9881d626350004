//! `strata scan`: a region's rows as CSV, or their count.

use std::io::Write;

use arrow_array::RecordBatch;
use futures::StreamExt;
use strata_engine::{EngineBuilder, RegionId, ScanOrder, ScanRequest, TimeRange};

use crate::EngineArgs;

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// A header line, then comma-separated values.
    Csv,
    /// One JSON object per row (numbers and booleans typed, timestamps as RFC 3339 text).
    Json,
}

/// The order rows are printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Order {
    /// Time group by time group (files and memtables whose time ranges overlap), oldest
    /// first, and by series and timestamp within each: no merge across groups, so many
    /// small files that do not overlap in time read as fast as one.
    Time,
    /// The whole region by series and timestamp (every file merged with every other).
    Key,
}

/// Arguments of `strata scan`.
#[derive(Debug, clap::Args)]
pub(crate) struct ScanArgs {
    /// Region id as `table.region`, e.g. 1024.0.
    #[arg(long)]
    region: RegionId,
    /// Only rows with a timestamp at or after this (milliseconds since the epoch).
    #[arg(long)]
    start: Option<i64>,
    /// Only rows with a timestamp before this (milliseconds since the epoch).
    #[arg(long)]
    end: Option<i64>,
    /// Columns to print, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    /// Print at most this many rows.
    #[arg(long)]
    limit: Option<usize>,
    /// Print only the number of rows.
    #[arg(long)]
    count: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    format: Format,
    /// Row order. Both print the same rows.
    #[arg(long, value_enum, default_value_t = Order::Time)]
    order: Order,
    /// Check every SST's size and crc32c against the manifest before reading it (a
    /// second read of each file): a damaged file that still decodes is an error instead
    /// of possibly wrong rows.
    #[arg(long)]
    verify_checksums: bool,
    /// Threads to scan with (default: every core). With one, files are decoded on the
    /// scanning task; with more, each file is decoded ahead on the other threads.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Read the region as a follower: only what its leader — another process, perhaps on
    /// another machine sharing the S3 bucket — has flushed and committed to the manifest;
    /// the local WAL is not read (nor needed). Without it, rows an ingest on this
    /// machine has not flushed yet are read from its WAL too.
    #[arg(long)]
    follower: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

impl ScanArgs {
    /// The runtime's worker threads, if given.
    pub(crate) fn threads(&self) -> Option<usize> {
        self.threads.map(usize::from)
    }
}

/// Opens the engine read-only: a scan works while an ingest writes the same directory,
/// sees a consistent prefix of what it committed, and changes nothing.
pub(crate) async fn run(args: ScanArgs) -> Result<(), String> {
    let mut config = args.engine.engine_config()?;
    if args.follower {
        config.wal.provider = strata_engine::WalProvider::Noop;
    }
    let engine = EngineBuilder::new(config.clone())
        .read_only()
        .build()
        .await
        .map_err(|e| crate::open_error(&e, &config))?;
    let result = scan(&engine, &args).await;
    engine.stop().await.map_err(|e| e.to_string())?;
    result
}

async fn scan(engine: &strata_engine::Engine, args: &ScanArgs) -> Result<(), String> {
    let region = args.region;
    let role = if args.follower {
        strata_engine::RegionRole::Follower
    } else {
        strata_engine::RegionRole::Leader
    };
    engine
        .open_as(region, role)
        .await
        .map_err(|e| crate::open_error(&e, engine.config()))?;
    let mut request = ScanRequest::new()
        .batch_rows(8192)
        .verify_checksums(args.verify_checksums)
        .prefetch_batches(if args.threads() == Some(1) { 0 } else { 2 })
        .order(match args.order {
            Order::Time => ScanOrder::TimeGroups,
            Order::Key => ScanOrder::Key,
        });
    if !args.columns.is_empty() {
        request = request.columns(args.columns.clone());
    }
    if args.start.is_some() || args.end.is_some() {
        request = request.time_range(TimeRange {
            start: args.start.unwrap_or(i64::MIN),
            end: args.end.map_or(i64::MAX, |e| e.saturating_sub(1)),
        });
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, crate::stdout::QuietStdout);
    if args.count {
        // From the manifest where files do not overlap, else from what deduplication
        // needs (keys, timestamps, sequences, op types), never the fields.
        let counted = engine
            .count(region, request)
            .await
            .map_err(|e| e.to_string())?;
        writeln!(out, "{}", counted.rows).map_err(|e| e.to_string())?;
        return out.flush().map_err(|e| e.to_string());
    }
    let mut stream = engine
        .scan(region, request)
        .await
        .map_err(|e| e.to_string())?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut rows = 0usize;
    let mut writer = Output::new(args.format, out);
    while rows < limit
        && let Some(batch) = stream.next().await
    {
        let batch = batch.map_err(|e| e.to_string())?;
        let take = batch.num_rows().min(limit - rows);
        rows += take;
        if take < batch.num_rows() {
            writer.write(&batch.slice(0, take))?;
        } else {
            writer.write(&batch)?;
        }
    }
    writer.finish()?.flush().map_err(|e| e.to_string())
}

/// Arrow's own CSV and JSON-lines writers over the buffered output.
enum Output<W: Write> {
    Csv(Box<arrow_csv::Writer<W>>),
    Json(arrow_json::LineDelimitedWriter<W>),
}

impl<W: Write> Output<W> {
    fn new(format: Format, out: W) -> Self {
        match format {
            // A header line, then the rows; timestamps as RFC 3339 text.
            Format::Csv => Output::Csv(Box::new(
                arrow_csv::WriterBuilder::new().with_header(true).build(out),
            )),
            // One object per row; numbers stay numbers, timestamps are text, nulls are
            // written as null.
            Format::Json => Output::Json(
                arrow_json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow_json::writer::LineDelimited>(out),
            ),
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        match self {
            Output::Csv(writer) => writer.write(batch).map_err(|e| e.to_string()),
            Output::Json(writer) => writer.write(batch).map_err(|e| e.to_string()),
        }
    }

    /// Ends the output and gives the underlying writer back (to flush).
    fn finish(self) -> Result<W, String> {
        match self {
            Output::Csv(writer) => Ok((*writer).into_inner()),
            Output::Json(mut writer) => {
                writer.finish().map_err(|e| e.to_string())?;
                Ok(writer.into_inner())
            }
        }
    }
}
