use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use transcoder::client::{self, SubmitArgs, Target};
use transcoder::config::Settings;
use transcoder::domain::ClientId;
use transcoder::provision;
use transcoder::startup::{Application, Role};
use transcoder::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(name = "transcoder", version, about = "Asynchronous video transcoding service")]
struct Cli {
    /// Configuration file layered over config/default.toml; may be given
    /// several times (later files win). TRANSCODER_CONFIG takes a
    /// `:`-separated list.
    #[arg(long, global = true, env = "TRANSCODER_CONFIG", value_delimiter = ':')]
    config: Vec<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// API and worker in one process (embedded object store when no endpoint is set).
    Serve,
    /// The HTTP API alone.
    Api,
    /// A worker alone.
    Worker,
    /// The webhook deliveries only (also part of `serve`).
    Webhooks,
    /// Upload a video; with --wait, follow its pushed events and download the result.
    Submit {
        file: PathBuf,
        /// Output format: mp4 (H.264/AAC), webm (VP9/Opus), or the adaptive
        /// streaming packages hls and dash.
        #[arg(long)]
        format: Option<String>,
        /// hls and dash: the renditions' heights, e.g. 720,360 (default: the ladder).
        #[arg(long)]
        renditions: Option<String>,
        /// Output height in pixels (aspect kept).
        #[arg(long)]
        height: Option<u32>,
        /// Priority 0-9; higher runs first.
        #[arg(long)]
        priority: Option<u8>,
        /// Wait for the job, showing its progress, and download the result.
        #[arg(long)]
        wait: bool,
        /// Where to save the result (with --wait): a file, or for hls and
        /// dash a folder that receives every file of the package.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Print the client's events as JSON lines (one job's, until it ends, with JOB_ID).
    Watch {
        job_id: Option<String>,
        /// Replay the client's event log from this point first: a duration
        /// back from now (10m, 2h, 1d) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Operator commands for clients.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Operator commands for the broker topology.
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
    /// Operator commands for the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration (files, then TRANSCODER__ variables) and print it with secrets
    /// redacted; exit 2 naming the key when a key is unknown, a value has the wrong type or is invalid.
    Check,
}

#[derive(Subcommand)]
enum TopologyCommand {
    /// Delete every queue and exchange of `amqp.prefix`, with the jobs and events they hold: the jobs
    /// queues, the control exchange, and per client (the configured ones and each --client) the
    /// notification exchange, event log and webhook queues.
    Remove {
        /// Also a client that is not (or no longer) configured.
        #[arg(long = "client")]
        clients: Vec<String>,
        /// Confirms that the prefix's queued jobs and events may be lost.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Create a RabbitMQ user per client that can read only its own events; prints each client's AMQP URL.
    Provision {
        /// The rabbitmqctl to run.
        #[arg(long, default_value = "rabbitmqctl")]
        rabbitmqctl: String,
    },
}

#[derive(clap::Args)]
struct TargetArgs {
    /// The service's base URL.
    #[arg(long, env = "TRANSCODER_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// API key (sent as a Bearer token).
    #[arg(long, env = "TRANSCODER_API_KEY")]
    api_key: Option<String>,
    /// Client id whose notification exchange to follow.
    #[arg(long, env = "TRANSCODER_CLIENT", default_value = "default")]
    client: String,
}

impl TargetArgs {
    fn target(self, settings: Settings) -> anyhow::Result<Target> {
        let client =
            ClientId::parse(&self.client).ok_or_else(|| anyhow::anyhow!("invalid client id {:?}", self.client))?;
        Ok(Target { server: self.server, api_key: self.api_key, client, settings })
    }
}

fn main() -> std::process::ExitCode {
    transcoder::startup::tune_allocator();
    run_command()
}

#[tokio::main]
async fn run_command() -> std::process::ExitCode {
    let cli = Cli::parse();
    let is_service = matches!(cli.command, Command::Serve | Command::Api | Command::Worker | Command::Webhooks);
    if is_service {
        telemetry::init(cli.log_format);
    }
    let settings = match Settings::load(&cli.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("transcoder: configuration: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve => run(settings, Role::Serve).await,
        Command::Api => run(settings, Role::Api).await,
        Command::Worker => run(settings, Role::Worker).await,
        Command::Webhooks => run(settings, Role::Webhooks).await,
        Command::Submit { file, format, renditions, height, priority, wait, output, target } => {
            let args = SubmitArgs { file, format, height, priority, renditions, wait, output };
            match target.target(settings) {
                Ok(t) => client::submit(&t, &args).await,
                Err(e) => Err(e),
            }
        }
        Command::Watch { job_id, since, target } => match target.target(settings) {
            Ok(t) => client::watch(&t, job_id.as_deref(), since.as_deref()).await,
            Err(e) => Err(e),
        },
        Command::Config { command: ConfigCommand::Check } => {
            // Loading already checked it (an error exits 2 above).
            println!("{settings:#?}");
            eprintln!("transcoder: configuration OK");
            Ok(())
        }
        Command::Topology { command: TopologyCommand::Remove { clients, yes } } => {
            remove_topology(&settings, &clients, yes).await
        }
        Command::Clients { command: ClientsCommand::Provision { rabbitmqctl } } => {
            provision::provision(&settings, &rabbitmqctl).map(|urls| {
                for (client, url) in urls {
                    println!("{client}\t{url}");
                }
            })
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if is_service {
                tracing::error!(error = format!("{e:#}"), "transcoder stopped with an error");
            }
            eprintln!("transcoder: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn remove_topology(settings: &Settings, extra: &[String], yes: bool) -> anyhow::Result<()> {
    anyhow::ensure!(yes, "this deletes the queued jobs and events of prefix {:?}: pass --yes", settings.amqp.prefix);
    let mut clients: Vec<ClientId> = settings.auth.keys.values().filter_map(|c| ClientId::parse(c)).collect();
    if clients.is_empty() {
        clients.push(ClientId::development());
    }
    for name in extra {
        let client = ClientId::parse(name).ok_or_else(|| anyhow::anyhow!("invalid client id {name:?}"))?;
        if !clients.contains(&client) {
            clients.push(client);
        }
    }
    let names = transcoder::queue::Names { prefix: settings.amqp.prefix.clone() };
    let topology = names.topology(&clients, &settings.webhooks.retry_seconds);
    let deleted = transcoder::queue::remove(&settings.amqp.url, &topology).await?;
    eprintln!("transcoder: removed {deleted} queues and exchanges of prefix {:?}", settings.amqp.prefix);
    Ok(())
}

async fn run(settings: Settings, role: Role) -> anyhow::Result<()> {
    let app = Application::build(settings, role).await?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: draining"),
        }
        trigger.cancel();
    });
    app.run_until(shutdown).await
}
