//! `segments ballista-scheduler` and `segments ballista-executor`: the
//! processes of a Ballista cluster for `engine.kind: ballista`, with the codec
//! that carries our in-memory tables and timestamp parser, and the object
//! stores, memory limit and spill directory of the config. The stock Ballista
//! images lack the codec, so a cluster runs this binary (docs/design.md §8).

use std::path::PathBuf;

use clap::Args;

use crate::config::{Config, parse_scheduler_url};
use crate::engine::ballista::{self, Endpoint, ExecutorOptions};
use crate::model::ExitStatus;

use super::{Failure, failure};

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// The config whose inputs the cluster reads (object stores, credentials
    /// from the environment).
    #[arg(long, env = "SEGMENTS_CONFIG", default_value = "config/local.yaml")]
    config: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: String,
    #[arg(long, default_value_t = 50050)]
    port: u16,
    /// How executors and clients reach this scheduler (a Service name).
    #[arg(long, env = "SEGMENTS_EXTERNAL_HOST")]
    external_host: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The config whose inputs the executor reads; its `engine.memory_limit`
    /// and `engine.spill_dir` apply to this executor.
    #[arg(long, env = "SEGMENTS_CONFIG", default_value = "config/local.yaml")]
    config: PathBuf,
    /// The scheduler, df://host:port.
    #[arg(long, env = "SEGMENTS_SCHEDULER_URL")]
    scheduler: String,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: String,
    /// Port of the Flight service that serves shuffle and result data.
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// Port of the gRPC service the scheduler sends tasks to.
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// How the scheduler, other executors and clients reach this executor
    /// (the pod IP).
    #[arg(long, env = "SEGMENTS_EXTERNAL_HOST")]
    external_host: Option<String>,
    /// Tasks run at once (0: the machine's CPUs).
    #[arg(long, default_value_t = 0)]
    vcores: usize,
    /// Scratch directory for shuffle files.
    #[arg(long)]
    work_dir: Option<String>,
}

pub async fn scheduler(args: SchedulerArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let endpoint = Endpoint {
        bind_host: args.bind,
        port: args.port,
        external_host: args.external_host,
    };
    crate::storage::scoped(config.storage.clone(), async {
        ballista::run_scheduler(&config, endpoint).await
    })
    .await
    .map_err(|e| failure(ExitStatus::Internal, e))
}

pub async fn executor(args: ExecutorArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let scheduler = parse_scheduler_url(&args.scheduler).map_err(|message| {
        failure(
            ExitStatus::Invalid,
            anyhow::anyhow!("--scheduler: {message}"),
        )
    })?;
    let endpoint = Endpoint {
        bind_host: args.bind,
        port: args.port,
        external_host: args.external_host,
    };
    let options = ExecutorOptions {
        scheduler,
        grpc_port: args.grpc_port,
        vcores: args.vcores,
        work_dir: args.work_dir,
    };
    crate::storage::scoped(config.storage.clone(), async {
        ballista::run_executor(&config, endpoint, options).await
    })
    .await
    .map_err(|e| failure(ExitStatus::Internal, e))
}
