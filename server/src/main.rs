//! `stockd`: the server binary. See [`server::config`] for its options.
//!
//! With no arguments it runs the embedded default (a single-node cluster with its data in
//! `./stockd-data`); `stockd dev --nodes 3` runs a local 3-node cluster; `--config FILE` or flags
//! configure a real node. Ctrl-C or SIGTERM shut down gracefully.

use std::process::ExitCode;

use clap::Parser;
use server::config::{dev_cluster, CertsArgs, Cli, Command};
use server::node::Node;

/// mimalloc instead of the system allocator: a node allocates and frees small objects on every
/// request and entry (frames, replies, log records, ledger pages), and under frame-100 load
/// glibc's malloc and free took about a tenth of a node's CPU (docs/BENCHMARKS.md,
/// "Allocator"). Only the `stockd` binary: the library leaves the choice to its embedder.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Normal elections and peers that come and go are not errors (see `server::logging`).
    server::logging::init();
    server::memory::no_transparent_huge_pages();
    // A broken ledger invariant (or any other bug) must stop the node rather than let it
    // diverge from its replicas: every panic, in any task, aborts the process.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let runtime = match runtime_builder(cli.runtime_threads).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stockd: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stockd: {e}");
            ExitCode::from(2)
        }
    }
}

/// The runtime `--runtime-threads` asks for: one thread, N threads, or one per core (0).
fn runtime_builder(threads: u16) -> tokio::runtime::Builder {
    match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(usize::from(n));
            builder
        }
    }
}

/// Runs `stockd` as the command line asks; the error is what `main` prints.
async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let configs = match cli.command {
        Some(Command::Certs(certs)) => return issue_certs(certs),
        Some(Command::Dev {
            nodes,
            base_port,
            data_dir,
            durability,
        }) => dev_cluster(nodes, base_port, &data_dir, durability)?,
        None => vec![cli.node.resolve()?],
    };
    server::hops::init();
    let mut nodes = Vec::new();
    for config in configs {
        let data_dir = config.data_dir.clone();
        let durability = config.durability.to_string();
        let node = Node::start(config).await?;
        println!(
            "stockd node {} listening on {} (QUIC, ALPN stockd/1), data in {}, durability {durability}",
            node.id(),
            node.local_addr(),
            data_dir.display()
        );
        if let Some(http) = node.http_addr() {
            println!("stockd node {} HTTP/JSON on http://{http}", node.id());
        }
        nodes.push(node);
    }
    print_started(&nodes);
    wait_for_signal().await;
    println!("stockd: shutting down");
    for node in nodes {
        node.shutdown().await;
    }
    server::hops::flush();
    Ok(())
}

/// Where to reach the started nodes.
fn print_started(nodes: &[Node]) {
    if let Some(first) = nodes.first() {
        println!("cluster CA certificate: {}", first.ca_path().display());
        println!(
            "cluster CA fingerprint (sha256): {}",
            first.ca_fingerprint()
        );
        println!("try: stockctl --connect {} status", first.local_addr());
        let token = first.ca_path().with_file_name(pki::ADMIN_TOKEN_FILE);
        if let (Some(http), true) = (first.http_addr(), token.exists()) {
            println!(
                "or:  curl -H \"Authorization: Bearer $(cat {})\" http://{http}/v1/availability?sku=A",
                token.display()
            );
        }
    }
}

/// `stockd certs`: ensures the CA and the admin identity, then issues a node certificate or
/// a client identity and says where it wrote it.
fn issue_certs(certs: CertsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let CertsArgs {
        ca_dir,
        out,
        name,
        client,
        role,
        channel,
        location,
        days,
    } = certs;
    pki::ensure_ca(&ca_dir)?;
    // Where certificates are issued, so is an administrator's identity (SPEC section 7).
    pki::ensure_admin(&ca_dir)?;
    let Some(client) = client else {
        let out = out.ok_or("--out DIR: where to write the node certificate")?;
        pki::ensure_node(&ca_dir, &out, &name)?;
        println!(
            "node certificate in {}, CA in {}",
            out.display(),
            ca_dir.display()
        );
        return Ok(());
    };
    let request = pki::ClientCertRequest {
        name: client,
        role: role.ok_or("--role ROLE")?,
        channels: channel,
        locations: location,
        days,
    };
    let issued = pki::issue_client(&ca_dir, out.as_deref().unwrap_or(&ca_dir), &request)?;
    println!(
        "client identity {} (role {}, credential {}, expires in {days} days): {} and {}",
        issued.principal.name,
        issued.principal.role,
        issued.principal.credential_id,
        issued.cert.display(),
        issued.key.display()
    );
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
