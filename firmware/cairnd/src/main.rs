//! `cairnd`: the cairn daemon. Parses the command line, sets up logging, and hands over to
//! [`run`]. Everything else lives in the library crates.

use anyhow::{bail, Context, Result};
use cairn_config::{Config, Defaults};
use cairn_dicom::{Server, ServerOptions};
use cairn_retention::RuleSet;
use cairn_store::{DataDir, Store};
use clap::{Parser, Subcommand};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod archive;
mod lifecycle;
mod monitor;
mod web;

#[derive(Parser)]
#[command(name = "cairnd", version, about = "cairn: the archive box daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the box on this machine with its embedded defaults, everything kept under DIR.
    Demo {
        /// Folder for the configuration, images, index and emulated hardware.
        dir: PathBuf,
        /// DICOM port (default 11112).
        #[arg(long)]
        dicom_port: Option<u16>,
        /// Web panel port (default 8080).
        #[arg(long)]
        http_port: Option<u16>,
        /// Address to listen on (default 0.0.0.0: every interface).
        #[arg(long)]
        bind: Option<IpAddr>,
    },
    /// Appliance start: run with this configuration file.
    Run {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // A log that cannot be written (its disk full) must never stop a thread: by default
        // tracing-subscriber reports a failed write with eprintln!, which panics when stderr
        // itself fails, and the store's writer thread would die with the line it logged.
        .log_internal_errors(false)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(Stopped::Exit) => {}
        Ok(Stopped::Restart) => restart_self(),
        Err(e) => {
            eprintln!("cairnd: {e:#}");
            std::process::exit(1);
        }
    }
}

/// How [`run`] ended: for good, or to start again (SIGHUP, which the panel's Restart button
/// raises once a saved setting needs a start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    Exit,
    Restart,
}

/// Start this program again in this process (same PID, arguments and environment: systemd
/// sees the same service, the demo the same console), after a clean stop.
fn restart_self() {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    tracing::info!("restarting");
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!("cairnd: cannot start again: {err}");
    std::process::exit(1);
}

fn dispatch(cli: Cli) -> Result<Stopped> {
    match cli.command {
        Command::Demo {
            dir,
            dicom_port,
            http_port,
            bind,
        } => {
            let mut config = demo_config(&dir)?;
            if let Some(p) = dicom_port {
                config.dicom.port = p;
            }
            if let Some(p) = http_port {
                config.http.port = p;
            }
            if let Some(b) = bind {
                config.dicom.bind = b;
                config.http.bind = b;
            }
            archive::demo_setup(&config)
                .context("cannot set up the demo's emulated tape and disc")?;
            let hw = monitor::demo_setup(&config.store.data_dir)
                .context("cannot set up the demo's emulated disks and buzzer")?;
            let panel = web::PanelMode {
                config_path: Some(config.store.data_dir.join("cairn.toml")),
                demo: true,
            };
            let rules = config.lifecycle.rule_set(&dir)?;
            run(config, rules, Some(hw), panel)
        }
        Command::Run { config } => {
            let c = Config::load(&config)?;
            refuse_demo_clock(&c.store.data_dir)?;
            let rules = c
                .lifecycle
                .rule_set(config.parent().unwrap_or(Path::new(".")))?;
            let hw = hardware_setup(&c)?;
            let panel = web::PanelMode {
                config_path: Some(config),
                demo: false,
            };
            run(c, rules, hw, panel)
        }
    }
}

/// Refuse to run the appliance on a data directory with a demo clock offset: its lifecycle
/// decisions (tiers, expiry, destruction) would be taken on a date that is not today.
fn refuse_demo_clock(data_dir: &Path) -> Result<()> {
    let offset = cairn_lifecycle::clock::offset_path(data_dir);
    if offset.exists() {
        bail!(
            "this data directory has a demo clock offset ({}): it belongs to a demo box, whose \
             clock was moved forward with cairnctl demo clock; cairnd run never runs on a moved \
             clock (start it with cairnd demo, or use another data directory)",
            offset.display()
        );
    }
    Ok(())
}

/// Read `DIR/cairn.toml`, writing the commented default there on the first run.
fn demo_config(dir: &Path) -> Result<Config> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let path = dir.join("cairn.toml");
    if !path.exists() {
        let text = cairn_config::default_toml(&Defaults {
            bind: IpAddr::from([0, 0, 0, 0]),
            dicom_port: 11112,
            http_port: 8080,
            data_dir: dir.clone(),
            accept_unknown_peers: true,
        });
        // NotSynced: a default lost in a crash is written again at the next start.
        cairn_files::atomic_write(&path, text.as_bytes(), cairn_files::Durability::NotSynced)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("cairn: wrote a default configuration to {}", path.display());
    }
    Ok(Config::load(&path)?)
}

/// The RAID monitor and alarm on real hardware, when the config names a board file.
fn hardware_setup(c: &Config) -> Result<Option<monitor::MonitorSetup>> {
    let Some(board_path) = &c.hardware.board else {
        tracing::info!("no [hardware] board in the config: RAID monitor and alarm are off");
        return Ok(None);
    };
    let board = cairn_hal::board::Board::load(board_path)?;
    Ok(Some(monitor::MonitorSetup {
        data_dir: c.store.data_dir.clone(),
        root: c.hardware.sysfs_root.clone().unwrap_or_else(|| "/".into()),
        board,
        alarm_file: c
            .hardware
            .alarm_state
            .clone()
            .unwrap_or_else(|| c.store.data_dir.join(cairn_raid::requests::ALARM_FILE)),
        emulator: None,
        scrub_interval_days: c.hardware.scrub_interval_days.unwrap_or(30),
    }))
}

/// The soft descriptor limit raised to the hard one (at most 2^20, the kernel's usual
/// `nr_open`), so the DICOM node, the monitor, the archive and the panel have what the system
/// allows; the panel's connection cap is derived from it. Returns the limit in force.
fn raise_descriptor_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the descriptor limit; assuming 1024");
            return 1024;
        }
    };
    let want = hard.min(1 << 20);
    if soft >= want {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, want, hard) {
        Ok(()) => want,
        Err(e) => {
            tracing::warn!(error = %e, soft, "cannot raise the descriptor limit");
            soft
        }
    }
}

/// Open the store, serve DICOM until SIGTERM or SIGINT (or SIGHUP: restart), then stop
/// cleanly.
fn run(
    config: Config,
    rules: RuleSet,
    hw: Option<monitor::MonitorSetup>,
    panel_mode: web::PanelMode,
) -> Result<Stopped> {
    let nofile = raise_descriptor_limit();
    let config = Arc::new(config);
    let data = DataDir::new(&config.store.data_dir);
    let store = Store::open(data.clone())
        .with_context(|| format!("cannot open the store in {}", data.root().display()))?;
    // before the DICOM node accepts: every image stored from now on is queued for each target
    let archive = archive::start(&config, store.clone()).context("archive")?;
    // stored objects the DICOM node finds missing or damaged reach the monitor's alarm
    let (damage_tx, damage_rx) = std::sync::mpsc::channel();
    let server = Server::bind(
        ServerOptions {
            config: config.clone(),
            damage: Some(damage_tx),
        },
        store.clone(),
    )
    .with_context(|| {
        format!(
            "cannot listen on {}:{} (is another program using the port?)",
            config.dicom.bind, config.dicom.port
        )
    })?;
    let addr = server.local_addr()?;
    let monitor = match hw {
        // the archive's "medium needed" sounds through the monitor's alarm
        Some(setup) => Some(
            monitor::start(
                setup,
                store.clone(),
                archive.as_ref().map(|a| a.medium()),
                damage_rx,
            )
            .context("RAID monitor")?,
        ),
        None => None,
    };
    let panel = web::start(&config, &store, &panel_mode, nofile).context("web panel")?;
    let rule_set = rules.name().to_owned();
    let host = lifecycle::Host {
        // the appliance (a board file) decides on dates only once its clock is synchronised,
        // unless [lifecycle] require_clock_sync says otherwise
        require_clock_sync: config.clock_sync_required(),
        // the demo's folder must stay removable by the person who made it
        immutable_files: !panel_mode.demo,
    };
    let lifecycle =
        lifecycle::start(store.clone(), rules, &config.lifecycle, host).context("lifecycle")?;
    let handle = server.handle();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])?;
    let restart = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let restart_seen = restart.clone();
    let signal_thread = std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            if sig == signal_hook::consts::SIGHUP {
                tracing::info!("stopping to start again");
                restart_seen.store(true, std::sync::atomic::Ordering::SeqCst);
            } else {
                tracing::info!(signal = sig, "stopping");
            }
            handle.shutdown();
        }
    });

    println!(
        "cairn ready: DICOM AE {} listening on {}",
        config.dicom.ae_title, addr
    );
    println!("  images and index: {}", data.root().display());
    println!(
        "  send images with e.g.: storescu -aec {} {} {} image.dcm",
        config.dicom.ae_title,
        if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            addr.ip().to_string()
        },
        addr.port()
    );
    println!(
        "  list what arrived: cairnctl --data {} studies",
        data.root().display()
    );
    if let Some(m) = &monitor {
        if m.is_emulated() {
            println!(
                "  emulated RAID 6 with 6 bays: cairnctl --data {0} raid status; try \
                 cairnctl --data {0} demo fail-disk 3, then demo insert-disk 3",
                data.root().display()
            );
        }
    }
    println!(
        "  images are kept as the {rule_set} retention rules say: cairnctl --data {} retention \
         show --patient ID",
        data.root().display()
    );
    println!("  web panel: {}", panel.url);
    if let Some(code) = &panel.setup_code {
        println!("  web panel first-boot setup code: {code} (no account exists yet)");
    }
    if let Some(a) = &archive {
        for line in &a.summary {
            println!("  cold copies to {line}");
        }
        println!(
            "  watch them: cairnctl --data {0} archive status; eject: cairnctl --data {0} \
             archive eject --location offsite_vault",
            data.root().display()
        );
    }
    println!("  stop with Ctrl-C (or SIGTERM); nothing acknowledged is lost.");

    let served = server.run();
    if let Some(a) = archive {
        a.stop();
    }
    panel.stop();
    lifecycle.stop();
    if let Some(m) = monitor {
        m.stop();
    }
    store.close().context("closing the store")?;
    drop(signal_thread);
    served.context("DICOM server")?;
    if data
        .root()
        .join("spool")
        .read_dir()
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
    {
        bail!("spool not empty after stop");
    }
    tracing::info!("stopped cleanly");
    Ok(if restart.load(std::sync::atomic::Ordering::SeqCst) {
        Stopped::Restart
    } else {
        Stopped::Exit
    })
}
