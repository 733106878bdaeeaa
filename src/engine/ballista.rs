//! The distributed engine (docs/design.md §8): the same session as the local engine,
//! upgraded to send its plans to an Apache Ballista scheduler — one started
//! inside this process (`engine.scheduler_url: standalone`) or a remote one
//! (`df://host:port`) whose executors run `segments ballista-executor`.
//!
//! Plans travel as protobuf. The stock Ballista codec cannot encode two
//! things our plans hold, so [`LogicalCodec`] and [`PhysicalCodec`] add them:
//! in-memory tables (the job's segment definitions, a published previous
//! snapshot), sent as Arrow IPC, and the functions of `engine::functions`
//! (timestamp parsing, local dates, text cleaning, row hashes), sent with
//! their parameters. The scheduler and executors must use the same codecs,
//! hence our own scheduler and executor entry points.

use std::io::Cursor;
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

use crate::config::Scheduler;
use crate::engine::erased::{ERASED_UDF, decode_erased_udf, encode_erased_udf};

/// Marks a table provider encoded by [`LogicalCodec`] (anything else is
/// Ballista's).
const MEMTABLE_MAGIC: &[u8] = b"segments-memtable-v1\0";

/// Ballista's logical codec plus in-memory tables and our UDF.
#[derive(Debug, Default)]
pub struct LogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

/// Ballista's physical codec plus our UDF.
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
}

fn decode_udf(name: &str, buf: &[u8]) -> Option<Result<Arc<ScalarUDF>>> {
    let text = || {
        std::str::from_utf8(buf)
            .map_err(|e| DataFusionError::Internal(format!("{name}: bad bytes in a plan: {e}")))
    };
    if name == ERASED_UDF {
        return Some(text().and_then(|text| {
            decode_erased_udf(text)
                .map(Arc::new)
                .map_err(DataFusionError::Configuration)
        }));
    }
    super::functions::decode_udf(name, buf).map(|udf| udf.map(Arc::new))
}

fn encode_udf(node: &ScalarUDF, buf: &mut Vec<u8>) -> bool {
    if let Some(parameter) = super::functions::encode_udf(node) {
        buf.extend_from_slice(&parameter);
        true
    } else if let Some(text) = encode_erased_udf(node) {
        buf.extend_from_slice(text.as_bytes());
        true
    } else {
        false
    }
}

/// `MAGIC`, then per partition a little-endian u64 length and an Arrow IPC
/// stream of its batches.
fn encode_memtable(table: &MemTable, buf: &mut Vec<u8>) -> Result<()> {
    buf.extend_from_slice(MEMTABLE_MAGIC);
    let schema = table.schema();
    for partition in &table.batches {
        let batches = partition
            .try_read()
            .map_err(|_| DataFusionError::Internal("in-memory table is being written to".into()))?;
        let mut stream = Vec::new();
        let mut writer = StreamWriter::try_new(&mut stream, &schema)?;
        for batch in batches.iter() {
            writer.write(batch)?;
        }
        writer.finish()?;
        drop(writer);
        buf.extend_from_slice(&(stream.len() as u64).to_le_bytes());
        buf.extend_from_slice(&stream);
    }
    Ok(())
}

fn decode_memtable(mut buf: &[u8], schema: SchemaRef) -> Result<MemTable> {
    let corrupt = || DataFusionError::Internal("corrupt in-memory table in a plan".into());
    let mut partitions: Vec<Vec<RecordBatch>> = Vec::new();
    while !buf.is_empty() {
        let (length, rest) = buf.split_first_chunk::<8>().ok_or_else(corrupt)?;
        let length = usize::try_from(u64::from_le_bytes(*length)).map_err(|_| corrupt())?;
        let stream = rest.get(..length).ok_or_else(corrupt)?;
        let reader = StreamReader::try_new(Cursor::new(stream), None)?;
        partitions.push(reader.collect::<std::result::Result<_, _>>()?);
        buf = &rest[length..];
    }
    if partitions.is_empty() {
        partitions.push(Vec::new());
    }
    MemTable::try_new(schema, partitions)
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.strip_prefix(MEMTABLE_MAGIC) {
            Some(data) => Ok(Arc::new(decode_memtable(data, schema)?)),
            None => self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        match node.downcast_ref::<MemTable>() {
            Some(table) => encode_memtable(table, buf),
            None => self.inner.try_encode_table_provider(table_ref, node, buf),
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(name, buf).unwrap_or_else(|| self.inner.try_decode_udf(name, buf))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if encode_udf(node, buf) {
            Ok(())
        } else {
            self.inner.try_encode_udf(node, buf)
        }
    }
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode_udf(name, buf).unwrap_or_else(|| self.inner.try_decode_udf(name, buf))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if encode_udf(node, buf) {
            Ok(())
        } else {
            self.inner.try_encode_udf(node, buf)
        }
    }
}

/// Largest gRPC message between client, scheduler and executors: a plan
/// carries the in-memory tables it reads (step results, see
/// `pipeline::register_steps`), well beyond Ballista's default of 16 MiB.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024 * 1024;

/// A session config carrying our codecs, for the client, the scheduler and
/// the executors alike, with Ballista's restrictions of DataFusion's
/// options (no round-robin repartitioning, no string views) and its static
/// planner; a standalone executor runs as many tasks at once as the config
/// has target partitions.
pub fn with_codecs(config: SessionConfig) -> SessionConfig {
    let partitions = config.target_partitions();
    config
        .upgrade_for_ballista()
        .with_ballista_grpc_client_max_message_size(MAX_MESSAGE_BYTES)
        // The adaptive planner (on by default in Ballista 55) can cancel a
        // running stage when it replans, and the job then never finishes
        // (apache/datafusion-ballista#2063): the static planner.
        .with_ballista_adaptive_query_planner(false)
        .with_ballista_standalone_parallelism(partitions)
        .with_ballista_logical_extension_codec(Arc::new(LogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(PhysicalCodec::default()))
}

/// Ballista's gRPC and Flight connections write to sockets their peers may
/// have closed. `segments` restores the default action of SIGPIPE (so that
/// `segments … | head` stops quietly), which would turn such a write into
/// the death of the process instead of one failed, retried request.
fn ignore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: SIG_IGN installs no handler; changing a disposition is safe
    // while other threads run.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Upgrade the local engine's session state to run its queries on Ballista.
/// A standalone cluster shares the state's runtime: object stores (including
/// transcoded CSV in memory), memory pool and spill directory.
pub async fn session(state: SessionState, scheduler: &Scheduler) -> Result<SessionContext> {
    ignore_sigpipe();
    match scheduler {
        Scheduler::Standalone => SessionContext::standalone_with_state(state).await,
        Scheduler::Remote { .. } => {
            SessionContext::remote_with_state(&scheduler.to_string(), state).await
        }
    }
}

/// Where a scheduler or executor process listens, and how others reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Address to bind, e.g. `0.0.0.0` in a pod.
    pub bind_host: String,
    pub port: u16,
    /// Name or IP others use to connect (the pod IP, a Service name).
    pub external_host: Option<String>,
}

/// Run a Ballista scheduler with our codecs until the process is stopped.
/// Physical planning lists the inputs, so it reads the config's object
/// stores with the config's credentials.
pub async fn run_scheduler(config: &crate::config::Config, endpoint: Endpoint) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    use datafusion::execution::session_state::SessionStateBuilder;

    ignore_sigpipe();
    let runtime =
        super::process_runtime(config).map_err(|e| DataFusionError::External(e.into()))?;
    let session_config = with_codecs(super::session_config(config));
    let mut scheduler = SchedulerConfig {
        bind_host: endpoint.bind_host.clone(),
        bind_port: endpoint.port,
        ..SchedulerConfig::default()
    };
    if let Some(host) = endpoint.external_host {
        scheduler.external_host = host;
    }
    scheduler.grpc_server_max_decoding_message_size = MAX_MESSAGE_BYTES as u32;
    scheduler.grpc_server_max_encoding_message_size = MAX_MESSAGE_BYTES as u32;
    scheduler.override_logical_codec = Some(Arc::new(LogicalCodec::default()));
    scheduler.override_physical_codec = Some(Arc::new(PhysicalCodec::default()));
    let base = session_config.clone();
    scheduler.override_config_producer = Some(Arc::new(move || base.clone()));
    scheduler.override_session_builder = Some(Arc::new(move |session_config: SessionConfig| {
        Ok(SessionStateBuilder::new()
            .with_config(with_codecs(session_config))
            .with_runtime_env(runtime.clone())
            .with_default_features()
            .build())
    }));
    let address: std::net::SocketAddr = format!("{}:{}", endpoint.bind_host, endpoint.port)
        .parse()
        .map_err(|e| DataFusionError::Configuration(format!("bad bind address: {e}")))?;
    let cluster = BallistaCluster::new_from_config(&scheduler)
        .await
        .map_err(|e| DataFusionError::External(e.into()))?;
    ballista_scheduler::scheduler_process::start_server(cluster, address, Arc::new(scheduler))
        .await
        .map_err(|e| DataFusionError::External(e.into()))
}

/// What an executor process needs besides its endpoint.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub scheduler: Scheduler,
    /// Port of the executor's gRPC service (the scheduler pushes to it).
    pub grpc_port: u16,
    /// Tasks at once; 0 = the CPUs of the machine.
    pub vcores: usize,
    /// Where shuffle files go (the executor's scratch space).
    pub work_dir: Option<String>,
}

/// Run a Ballista executor with our codecs and the config's object stores,
/// memory limit and spill directory until the process is stopped.
pub async fn run_executor(
    config: &crate::config::Config,
    endpoint: Endpoint,
    options: ExecutorOptions,
) -> Result<()> {
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};

    ignore_sigpipe();
    let Scheduler::Remote { host, port } = options.scheduler else {
        return Err(DataFusionError::Configuration(
            "an executor needs a df://host:port scheduler".into(),
        ));
    };
    let runtime =
        super::process_runtime(config).map_err(|e| DataFusionError::External(e.into()))?;
    let session_config = with_codecs(super::session_config(config));
    // Without --work-dir, a scratch directory of this process (Ballista's
    // own default is a temporary directory it deletes at once).
    let scratch = match &options.work_dir {
        Some(_) => None,
        None => {
            let dir =
                std::env::temp_dir().join(format!("segments-executor-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir)?;
            Some(dir)
        }
    };
    let work_dir = match (&options.work_dir, &scratch) {
        (Some(dir), _) => Some(dir.clone()),
        (None, dir) => dir.as_ref().map(|d| d.display().to_string()),
    };
    let process = ExecutorProcessConfig {
        bind_host: endpoint.bind_host,
        port: endpoint.port,
        external_host: endpoint.external_host,
        grpc_port: options.grpc_port,
        scheduler_host: host,
        scheduler_port: port,
        vcores: options.vcores,
        work_dir,
        memory_pool_size: config.engine.memory_limit.map(|bytes| bytes as u64),
        grpc_max_decoding_message_size: MAX_MESSAGE_BYTES as u32,
        grpc_max_encoding_message_size: MAX_MESSAGE_BYTES as u32,
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        override_config_producer: Some(Arc::new(move || session_config.clone())),
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| Ok(runtime.clone()))),
        ..ExecutorProcessConfig::default()
    };
    let result = start_executor_process(Arc::new(process))
        .await
        .map_err(|e| DataFusionError::External(e.into()));
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::functions::{
        PARSE_LOCAL_TIMESTAMP, parse_local_timestamp_format, parse_local_timestamp_udf,
    };
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn memtables_round_trip() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Int64Array::from(vec![Some(1), None])),
            ],
        )
        .unwrap();
        let table = MemTable::try_new(schema.clone(), vec![vec![batch.clone()], vec![]]).unwrap();
        let mut buf = Vec::new();
        encode_memtable(&table, &mut buf).unwrap();
        let decoded = decode_memtable(buf.strip_prefix(MEMTABLE_MAGIC).unwrap(), schema).unwrap();
        assert_eq!(decoded.batches.len(), 2);
        assert_eq!(decoded.batches[0].try_read().unwrap()[0], batch);
        assert!(decoded.batches[1].try_read().unwrap().is_empty());
    }

    #[test]
    fn the_timestamp_udf_keeps_its_format() {
        let udf = parse_local_timestamp_udf("%d/%m/%Y %H:%M");
        let mut buf = Vec::new();
        LogicalCodec::default()
            .try_encode_udf(&udf, &mut buf)
            .unwrap();
        let decoded = PhysicalCodec::default()
            .try_decode_udf(PARSE_LOCAL_TIMESTAMP, &buf)
            .unwrap();
        assert_eq!(
            parse_local_timestamp_format(&decoded),
            Some("%d/%m/%Y %H:%M")
        );
    }
}
