//! `palisade`: the sidecar's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A resilience sidecar: timeouts, retries, circuit breakers, bulkheads, rate limits and
/// fallbacks in front of a service's upstreams, from one TOML file.
#[derive(Parser)]
#[command(name = "palisade", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the proxy.
    Run {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validates a config file: prints "ok", or every problem with its line.
    Check {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Shows the proxy at work against simulated upstreams; needs no setup.
    Demo {
        /// How long to run, e.g. "30s" or "2m".
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config } => run(config),
        Command::Demo { duration } => demo(duration),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match palisade_proxy::config::load(path) {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!("{problems}");
            ExitCode::from(1)
        }
    }
}

fn run(path: PathBuf) -> ExitCode {
    let checked = match palisade_proxy::config::load(&path) {
        Ok(checked) => checked,
        Err(problems) => {
            eprintln!("{problems}");
            return ExitCode::from(1);
        }
    };
    let runtime = match proxy_runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        palisade_proxy::telemetry::install_logs();
        palisade_proxy::telemetry::install_metrics();
        match palisade_proxy::server::start(checked, Some(path)).await {
            Ok(running) => {
                running.wait().await;
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("cannot start: {error}");
                ExitCode::from(1)
            }
        }
    })
}

/// The proxy's runtime: one worker per core (`TOKIO_WORKER_THREADS` overrides), and with
/// a single worker a current-thread runtime, which serves everything from the thread that
/// runs it without the work-stealing scheduler's hand-offs between threads.
fn proxy_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()));
    if workers == Some(1) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
}

fn demo(duration: std::time::Duration) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        palisade_proxy::telemetry::install_metrics();
        match palisade_proxy::demo::run(duration).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("demo failed: {error}");
                ExitCode::from(1)
            }
        }
    })
}
