//! `palisade`: the sidecar's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc, not glibc's malloc: every allocation of a proxied request comes from a
/// per-thread cache, and idle connections hold less memory (docs/ARCHITECTURE.md, "What a
/// request costs").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Validates a config file: prints "ok", or every problem with its line; warns of
    /// common mistakes in a valid file (advice, each with its fix and runbook).
    Check {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Fails (exit 1) on warnings too.
        #[arg(long)]
        strict: bool,
    },
    /// Prints Prometheus alerting rules for the config's upstreams, routes and sagas
    /// (YAML, for `rule_files`), each linking its runbook in docs/RUNBOOKS.md.
    Alerts {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Where docs/RUNBOOKS.md is read: each rule's `runbook_url` is this plus a
        /// section's anchor.
        #[arg(long, default_value = palisade_proxy::runbooks::DEFAULT_BASE)]
        runbook_base: String,
        /// Every route's SLO, in percent of answers that are not 5xx (95 to under 100):
        /// the error-budget rules alert when it burns too fast.
        #[arg(long, default_value_t = palisade_proxy::alerts::DEFAULT_SLO)]
        slo: f64,
        /// Label matchers added to every series the rules read, e.g. 'job="checkout"',
        /// so that rules of several sidecars can share one Prometheus.
        #[arg(long)]
        selector: Option<String>,
    },
    /// Lists, shows, resumes, retries or aborts the running proxy's sagas (through its
    /// admin port, as the config file gives it).
    Saga {
        /// The config file of the running proxy.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: SagaCommand,
    },
    /// A fault proxy for TCP dependencies, driven by a Toxiproxy-compatible HTTP API.
    Toxic {
        /// The API's address.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// The API's port (Toxiproxy's by default).
        #[arg(long, default_value_t = 8474)]
        port: u16,
        /// A Toxiproxy config: a JSON list of proxies to create at start.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Runs a game day: the experiment file's targets, load, faults and hypotheses;
    /// exit code 0 when every hypothesis held, 1 when not, 2 for a bad file. A .json,
    /// .yaml or .yml file is a Chaos Toolkit experiment (http and process activities).
    Gameday {
        /// The experiment file: .toml (Palisade's) or .json/.yaml/.yml (Chaos Toolkit's).
        file: PathBuf,
        /// Where the journal and reports go. Default gameday-out/<file stem>.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// (Internal) runs a game day's target, killing it when the runner is gone.
    #[command(name = "gameday-guard", hide = true)]
    GamedayGuard {
        runner: u32,
        pid_file: PathBuf,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Shows the proxy at work against simulated upstreams; needs no setup.
    Demo {
        /// How long to run, e.g. "30s" or "2m".
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Serve only this one of the demo's upstreams (steady, flaky, replica, stuck),
        /// on `--listen`, until stopped: a dependency for game days.
        #[arg(long, requires = "listen")]
        upstream: Option<String>,
        /// Where `--upstream` listens, e.g. 127.0.0.1:18101.
        #[arg(long, requires = "upstream")]
        listen: Option<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
enum SagaCommand {
    /// Sagas, newest first.
    List {
        /// Only those in this state: running, compensating, completed, compensated,
        /// parked, aborted.
        #[arg(long)]
        state: Option<String>,
    },
    /// One saga with its timeline of steps and attempts.
    Show { id: String },
    /// Resumes a parked saga where it stopped.
    Resume { id: String },
    /// Retries a parked saga from its failed step.
    Retry { id: String },
    /// Gives a parked saga up (its effects may remain; the reason says so).
    Abort { id: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, strict } => check(&config, strict),
        Command::Alerts {
            config,
            runbook_base,
            slo,
            selector,
        } => alerts(
            &config,
            &palisade_proxy::alerts::Options {
                runbook_base,
                slo,
                selector,
            },
        ),
        Command::Run { config } => run(config),
        Command::Demo {
            duration,
            upstream,
            listen,
        } => match upstream.zip(listen) {
            Some((name, address)) => demo_upstream(&name, address),
            None => demo(duration),
        },
        Command::Saga { config, action } => saga(config, action),
        Command::Toxic { host, port, config } => toxic((host, port).into(), config),
        Command::Gameday { file, out } => gameday(&file, out),
        Command::GamedayGuard {
            runner,
            pid_file,
            command,
        } => palisade_proxy::gameday::guard::run(runner, &pid_file, &command),
    }
}

fn saga(config: Option<PathBuf>, action: SagaCommand) -> ExitCode {
    use palisade_proxy::saga::cli::{Action, run};
    let Some(config) = config else {
        eprintln!("palisade saga: --config FILE is required (the running proxy's config)");
        return ExitCode::from(2);
    };
    let action = match action {
        SagaCommand::List { state } => Action::List { state },
        SagaCommand::Show { id } => Action::Show(id),
        SagaCommand::Resume { id } => Action::Resume(id),
        SagaCommand::Retry { id } => Action::Retry(id),
        SagaCommand::Abort { id } => Action::Abort(id),
    };
    let runtime = match event_loop(tokio::runtime::Builder::new_current_thread()) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(run(&config, action)) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("palisade saga: {error}");
            ExitCode::from(1)
        }
    }
}

fn check(path: &std::path::Path, strict: bool) -> ExitCode {
    let checked = match palisade_proxy::config::load(path) {
        Ok(checked) => checked,
        Err(problems) => {
            eprintln!("{problems}");
            return ExitCode::from(1);
        }
    };
    for advice in &checked.advice {
        eprintln!("{advice}");
    }
    match checked.advice.len() {
        0 => {
            println!("ok");
            ExitCode::SUCCESS
        }
        n if strict => {
            eprintln!("{n} warning(s), and --strict: not ok");
            ExitCode::from(1)
        }
        n => {
            println!("ok, with {n} warning(s)");
            ExitCode::SUCCESS
        }
    }
}

fn alerts(path: &std::path::Path, options: &palisade_proxy::alerts::Options) -> ExitCode {
    let checked = match palisade_proxy::config::load(path) {
        Ok(checked) => checked,
        Err(problems) => {
            eprintln!("{problems}");
            return ExitCode::from(1);
        }
    };
    match palisade_proxy::alerts::write(&path.display().to_string(), &checked, options) {
        Ok(rules) => {
            print!("{rules}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("palisade alerts: {error}");
            ExitCode::from(2)
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
    // One event loop per worker thread: this thread is worker 0, the server starts the
    // others (`server::start_with_workers`).
    let runtime = match event_loop(tokio::runtime::Builder::new_current_thread()) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let workers = workers();
    runtime.block_on(async move {
        palisade_proxy::telemetry::install_logs();
        palisade_proxy::telemetry::install_metrics();
        match palisade_proxy::serve::start_with_workers(checked, Some(path), workers).await {
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

/// The tokio runtime `builder` makes, with its drivers; the exit code when it cannot.
fn event_loop(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|error| {
        eprintln!("cannot start the runtime: {error}");
        ExitCode::from(1)
    })
}

/// Worker threads: one per core, or `TOKIO_WORKER_THREADS`.
fn workers() -> usize {
    std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

fn demo(duration: std::time::Duration) -> ExitCode {
    let runtime = match event_loop(tokio::runtime::Builder::new_multi_thread()) {
        Ok(runtime) => runtime,
        Err(code) => return code,
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

fn demo_upstream(name: &str, address: std::net::SocketAddr) -> ExitCode {
    let runtime = match event_loop(tokio::runtime::Builder::new_current_thread()) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(palisade_proxy::demo::serve_upstream(name, address)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("palisade demo --upstream: {error}");
            ExitCode::from(2)
        }
    }
}

fn toxic(address: std::net::SocketAddr, config: Option<PathBuf>) -> ExitCode {
    let populate = match config.as_deref().map(std::fs::read_to_string) {
        None => None,
        Some(Ok(text)) => Some(text),
        Some(Err(error)) => {
            eprintln!(
                "cannot read {}: {error}",
                config.unwrap_or_default().display()
            );
            return ExitCode::from(1);
        }
    };
    let runtime = match event_loop(tokio::runtime::Builder::new_multi_thread()) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        palisade_proxy::telemetry::install_logs();
        match palisade_proxy::toxic::ToxicServer::start(address, populate.as_deref()).await {
            Ok(server) => {
                println!("toxic API on http://{}", server.address());
                server.wait().await;
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("palisade toxic: {error}");
                ExitCode::from(1)
            }
        }
    })
}

fn gameday(file: &std::path::Path, out: Option<PathBuf>) -> ExitCode {
    use palisade_proxy::gameday::{RunError, chaostoolkit, run};
    let runtime = match event_loop(tokio::runtime::Builder::new_multi_thread()) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    if let Some(syntax) = chaostoolkit::syntax_of(file) {
        let out = palisade_proxy::gameday::out_dir(file, out);
        return match runtime.block_on(chaostoolkit::run(file, syntax, &out)) {
            Ok(journal) => {
                let deviated = if journal.deviated { ", deviated" } else { "" };
                println!("status: {:?}{deviated}", journal.status);
                println!("{}", if journal.passed() { "PASSED" } else { "FAILED" });
                ExitCode::from(u8::from(!journal.passed()))
            }
            Err(RunError::Invalid(problems)) => {
                eprintln!("{problems}");
                ExitCode::from(2)
            }
            Err(error @ RunError::Failed(_)) => {
                eprintln!("palisade gameday: {error}");
                ExitCode::from(1)
            }
        };
    }
    match runtime.block_on(run(file, out)) {
        Ok(journal) => {
            eprintln!();
            for verdict in &journal.verdicts {
                println!(
                    "{} {} [{}]: {} {} (threshold {})",
                    if verdict.passed { "PASS" } else { "FAIL" },
                    verdict.name,
                    verdict.window,
                    verdict.measure,
                    verdict.measured,
                    verdict.threshold
                );
            }
            if let Some(aborted) = &journal.aborted {
                println!(
                    "ABORTED at {:.1} s: {} (every fault removed in {} ms)",
                    aborted.at_ms as f64 / 1000.0,
                    aborted.reason,
                    aborted.cleared_in_ms
                );
            }
            println!("{}", if journal.passed { "PASSED" } else { "FAILED" });
            ExitCode::from(u8::from(!journal.passed))
        }
        Err(RunError::Invalid(problems)) => {
            eprintln!("{problems}");
            ExitCode::from(2)
        }
        Err(error @ RunError::Failed(_)) => {
            eprintln!("palisade gameday: {error}");
            ExitCode::from(1)
        }
    }
}
