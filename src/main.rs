//! The command line (SPEC §5): the only place that exits the process.
//!
//! Exit codes: 0 success; 1 a policy test failed or a diff gate tripped;
//! 2 invalid input (config, policies, arguments).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use zambda_guard::config::{Config, LogFormat};
use zambda_guard::explain::{self, Format, Query};
use zambda_guard::reload::Reloader;
use zambda_guard::store::{self, Reload};
use zambda_guard::tooling::{cases, diff::Diff, diff::Flip, report};
use zambda_guard::{authn, demo, server};

#[derive(Parser)]
#[command(
    name = "zambda-guard",
    version,
    about = "A reverse proxy that enforces Oystehr Zambda invoke permissions in front of any function backend.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default command).
    Run(RunArgs),
    /// Validate the config, the policies and key files; print a summary.
    Check(ConfigArg),
    /// Print the decision for one principal and Zambda, and why.
    Explain(ExplainArgs),
    /// Run policy tests: cases of principal, Zambda and expected decision.
    Test(TestArgs),
    /// Show which (actor or role, Zambda) decisions a policy change flips.
    Diff(DiffArgs),
    /// Start a self-contained demonstration: echo backend, generated key,
    /// example policies, and ready-to-paste curl commands.
    Demo(DemoArgs),
    /// Keep a policy file in step with an Oystehr project (the `oystehr`
    /// section of the config).
    Sync(SyncArgs),
}

#[derive(Args)]
struct SyncArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Sync once and exit: 0 when the file is in step, 1 when the sync
    /// failed (nothing written).
    #[arg(long)]
    once: bool,
}

#[derive(Args)]
struct ConfigArg {
    /// The config file.
    #[arg(long, short = 'c', default_value = "config.yaml")]
    config: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    /// The config file.
    #[arg(long, short = 'c', default_value = "config.yaml")]
    config: PathBuf,
    /// Take the listening sockets over from a running instance (send it SIGQUIT).
    #[arg(long)]
    upgrade: bool,
}

#[derive(Args)]
struct ExplainArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// A bearer token; verified as the proxy would (fetching keys if needed).
    #[arg(long, conflicts_with_all = ["subject", "role", "issuer"], required_unless_present = "subject")]
    token: Option<String>,
    /// With --token: only decode the token, do not verify it.
    #[arg(long, requires = "token")]
    no_verify: bool,
    /// The actor's subject.
    #[arg(long)]
    subject: Option<String>,
    /// The token issuer, for issuer-bound actors.
    #[arg(long, requires = "subject")]
    issuer: Option<String>,
    /// A role the token would carry (repeatable).
    #[arg(long = "role", requires = "subject")]
    role: Vec<String>,
    /// The Zambda id or name.
    #[arg(long)]
    zambda: String,
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Json,
}

#[derive(Args)]
struct TestArgs {
    /// The config: its policies.dir (for test files naming no `policies:`) and token claims.
    #[arg(long, short = 'c', default_value = "config.yaml")]
    config: PathBuf,
    /// Test files, or directories searched recursively for *.test.yaml|yml|json.
    #[arg(required = true, value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,
}

#[derive(Args)]
struct DiffArgs {
    /// Exit with code 1 when any pair flips this way (repeatable).
    #[arg(long, value_enum)]
    fail_on: Vec<FailOn>,
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
    /// A config to hold both sets to, as `run` would (every named upstream
    /// configured); without it, only the policy files' own rules apply.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// The policy directory before the change.
    old_dir: PathBuf,
    /// The policy directory after the change.
    new_dir: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum FailOn {
    NewlyAllowed,
    NewlyDenied,
}

#[derive(Args)]
struct DemoArgs {
    /// Proxy port on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Admin port on 127.0.0.1.
    #[arg(long, default_value_t = 9901)]
    admin_port: u16,
    /// Echo backend port on 127.0.0.1.
    #[arg(long, default_value_t = 3000)]
    backend_port: u16,
}

/// mimalloc instead of the system allocator: a proxied request allocates
/// and frees many small objects (headers, buffers, futures), and glibc's
/// malloc cost about a tenth of the proxy's CPU time under load (see
/// docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // SIGHUP's default action kills the process; register before anything
    // else so a reload signal can never take the proxy down.
    let hangups = match signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install the SIGHUP handler: {e}");
            return ExitCode::from(2);
        }
    };
    authn::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run(cli.run)) {
        Command::Run(args) => run(args, hangups),
        Command::Check(args) => check(&args.config),
        Command::Explain(args) => explain(args),
        Command::Test(args) => policy_test(&args),
        Command::Diff(args) => diff(&args),
        Command::Demo(args) => demo(args, hangups),
        Command::Sync(args) => sync(&args),
    }
}

fn load_config(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: invalid config:\n{e}");
        ExitCode::from(2)
    })
}

fn init_logging(format: LogFormat) {
    let json = match std::env::var("LOG_FORMAT") {
        Ok(v) => v.eq_ignore_ascii_case("json"),
        Err(_) => format == LogFormat::Json,
    };
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The hint lets `log` records below the wanted level (pingora logs
    // through `log`) stop at the macro instead of being bridged into
    // tracing on every request and filtered there.
    let hint = filter
        .max_level_hint()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE);
    // pingora (and h2 under it) print whole request headers and bodies at
    // debug and trace level: Authorization included; the HTTP clients under
    // the JWKS fetcher and the span exporter (reqwest, hyper) and the
    // OpenTelemetry SDK can print request headers too. Nothing from them
    // below info is ever written, whatever RUST_LOG says: the filter is the
    // subscriber's own, so it holds for every layer.
    let no_secrets = tracing_subscriber::filter::filter_fn(|meta| {
        let t = meta.target();
        let chatty = [
            "pingora",
            "h2",
            "hyper",
            "reqwest",
            "opentelemetry",
            "tonic",
        ]
        .iter()
        .any(|prefix| t.starts_with(prefix));
        !(chatty && *meta.level() > tracing::Level::INFO)
    })
    .with_max_level_hint(hint);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = if json {
        fmt.fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(zambda_guard::logs::FlatJson)
            .boxed()
    } else {
        fmt.with_ansi(std::io::stderr().is_terminal()).boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(no_secrets)
        .with(layer.with_filter(filter))
        .try_init();
}

fn run(args: RunArgs, hangups: signal_hook::iterator::Signals) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(config.log.format);
    serve(config, args.upgrade, hangups)
}

/// Starts the server for a validated config and blocks until it stops.
fn serve(config: Config, upgrade: bool, hangups: signal_hook::iterator::Signals) -> ExitCode {
    let state = match server::prepare(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        listen = %state.config.listen.map_or_else(|| "none".to_string(), |l| l.to_string()),
        authz_listen = %state.config.authz.as_ref().map_or_else(|| "none".to_string(), |a| a.listen.to_string()),
        admin = %state.config.admin_listen,
        upstream = %state.config.upstream.address_text,
        policies = %state.config.policies.dir.display(),
        "zambda-guard {} starting",
        zambda_guard::VERSION
    );
    if let Err(not_ready) = state.readiness() {
        for reason in not_ready.0 {
            tracing::warn!("not ready yet: {reason}");
        }
    }
    let reloader = Reloader::new(state.clone());
    if state.config.policies.watch {
        if let Err(e) = reloader.spawn_watcher() {
            tracing::error!("cannot start the policy watcher: {e}; SIGHUP still reloads");
        }
    }
    reload_on_hangup(reloader, hangups);
    match server::run(state, upgrade) {
        server::Stopped::Drained => tracing::info!("drained; exiting"),
        server::Stopped::Finished => tracing::info!("stopped"),
    }
    // Returning ends the process, pingora's remaining threads with it.
    ExitCode::SUCCESS
}

/// SIGHUP re-reads the policies and the TLS certificate now; an invalid set
/// or pair is refused and logged.
fn reload_on_hangup(reloader: Arc<Reloader>, mut hangups: signal_hook::iterator::Signals) {
    std::thread::spawn(move || {
        for _ in hangups.forever() {
            if reloader.reload_policies("SIGHUP") == Reload::Unchanged {
                tracing::info!("SIGHUP: policies unchanged");
            }
            reloader.reload_certificate("SIGHUP");
        }
    });
}

fn check(path: &std::path::Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut problems = Vec::new();
    if let Err(e) = authn::Authenticator::new(&config.auth) {
        problems.push(e.to_string());
    }
    let loaded = match store::load(&config) {
        Ok(l) => Some(l),
        Err(e) => {
            problems.extend(e.0.iter().map(ToString::to_string));
            None
        }
    };
    if !problems.is_empty() {
        eprintln!("error: {} problem(s):", problems.len());
        for p in problems {
            eprintln!("  {p}");
        }
        return ExitCode::from(2);
    }
    let Some(loaded) = loaded else {
        return ExitCode::from(2);
    };
    for w in report::warnings(&config, &loaded) {
        println!("warning: {w}");
    }
    println!("{}", report::summary(&config, &loaded));
    if let Some(o) = &config.oystehr {
        println!(
            "oystehr sync: project {} into {} every {}s, M2M clients and defaults bound to {}",
            o.project_id,
            o.path().display(),
            o.interval.as_secs(),
            o.issuer
        );
    }
    ExitCode::SUCCESS
}

fn sync(args: &SyncArgs) -> ExitCode {
    let config = match load_config(&args.config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(config.log.format);
    let sync = match zambda_guard::sync::Sync::new(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if args.once {
        return match runtime.block_on(sync.round()) {
            Ok(_) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(1),
        };
    }
    match runtime.block_on(sync.run_loop()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot listen for the sync's admin endpoints: {e}");
            ExitCode::from(2)
        }
    }
}

fn explain(args: ExplainArgs) -> ExitCode {
    let config = match load_config(&args.config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let set = match store::load(&config) {
        Ok(l) => l.set,
        Err(e) => {
            eprintln!("error: invalid policies:\n{e}");
            return ExitCode::from(2);
        }
    };
    let query = match (args.token, args.subject) {
        (Some(token), _) if args.no_verify => Query::UnverifiedToken(token),
        (Some(token), _) => Query::Token(token),
        (None, Some(subject)) => Query::Subject {
            subject,
            issuer: args.issuer,
            roles: args.role,
        },
        (None, None) => {
            eprintln!("error: give --token or --subject");
            return ExitCode::from(2);
        }
    };
    let format = match args.format {
        FormatArg::Text => Format::Text,
        FormatArg::Json => Format::Json,
    };
    match explain::run(&config, &set, query, &args.zambda, format) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn policy_test(args: &TestArgs) -> ExitCode {
    match cases::run(&args.paths, &args.config) {
        Ok(report) => {
            print!("{}", report.text());
            ExitCode::from(u8::from(!report.passed()))
        }
        Err(invalid) => {
            eprintln!("error: invalid input, no case was run:");
            for problem in invalid.0 {
                eprintln!("  {problem}");
            }
            ExitCode::from(2)
        }
    }
}

fn diff(args: &DiffArgs) -> ExitCode {
    let config = match &args.config {
        Some(path) => match load_config(path) {
            Ok(c) => Some(c),
            Err(code) => return code,
        },
        None => None,
    };
    let load = |which: &str, dir: &std::path::Path| {
        store::load_dir(dir, config.as_ref()).map_err(|e| {
            eprintln!("error: invalid {which} policies in {}:\n{e}", dir.display());
        })
    };
    let (Ok(old), Ok(new)) = (load("old", &args.old_dir), load("new", &args.new_dir)) else {
        return ExitCode::from(2);
    };
    for warning in &new.warnings {
        eprintln!("warning: {warning}");
    }
    let diff = Diff::between(&old.set, &new.set);
    match args.format {
        FormatArg::Text => print!("{}", diff.text()),
        FormatArg::Json => println!("{:#}", diff.json()),
    }
    let mut tripped = false;
    for gate in &args.fail_on {
        let (flip, name) = match gate {
            FailOn::NewlyAllowed => (Flip::NewlyAllowed, "newly-allowed"),
            FailOn::NewlyDenied => (Flip::NewlyDenied, "newly-denied"),
        };
        let count = diff.count(flip);
        if count > 0 {
            eprintln!("diff: --fail-on {name}: {count} pair(s)");
            tripped = true;
        }
    }
    ExitCode::from(u8::from(tripped))
}

fn demo(args: DemoArgs, hangups: signal_hook::iterator::Signals) -> ExitCode {
    init_logging(LogFormat::Text);
    let setup = match demo::prepare(args.port, args.admin_port, args.backend_port) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot prepare the demo: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = demo::start_backend(args.backend_port) {
        eprintln!(
            "error: cannot start the echo backend on 127.0.0.1:{}: {e}",
            args.backend_port
        );
        return ExitCode::from(2);
    }
    println!("{}", setup.instructions);
    serve(setup.config, false, hangups)
}
