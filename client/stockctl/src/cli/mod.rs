//! `stockctl`, the operators' CLI: every operation and query of SPEC section 3, cluster status
//! and membership, and the scenario-case runner.
//!
//! Exit status: 0 done; 1 the ledger rejected the write (or answered a read with a rejection
//! such as `not_found`); 2 a usage, configuration or connection error (or `add-node` added
//! nothing); 3 `add-node` left the node a learner (catching up or unreachable: run it again).
//!
//! Quantities on the command line are DISPLAY units: before sending, stockctl asks the cluster
//! for each SKU's scale (an availability read returns it) and converts with
//! [`engine::units`]; more decimals than the scale is `invalid`, decided locally (exit 1).
//! Human output shows display units; `--json` shows the wire values (base units, ms).

pub mod show;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use engine::query::{ChangeEvent, TransferView};
use engine::{
    Answer, ChannelId, Command, Fulfilment, GroupId, Line, LocatedLine, LocationDef, LocationId,
    LocationKind, ObjectKind, OrderId, OrderSource, Outcome, Query, Reason, Rejection, RequestId,
    ReservationId, ReturnLine, RmaId, SkuId, Target, TransferId,
};
use pki::Trust;
use protocol::{Consistency, MemberState, NodeAddr};
use serde_json::{json, Value};

use crate::case::{run_case, CaseTarget, EngineTarget, RunOptions};
use crate::cluster_target::{options_for, ClusterTarget};
use client::{new_request_id, Client, ClientConfig, ClientError, ReadResult};

use crate::grammar::{self, LineText, Qty, ReturnText, SkuAt, DEFAULT_PICKUP_MS};
use show::{ReplyContext, Scales};

/// Default node address.
pub const DEFAULT_CONNECT: &str = "127.0.0.1:7400";
/// CA certificate used when neither `--ca` nor `--fingerprint` is given, if it exists.
pub const DEFAULT_CA: &str = "stockd-data/ca.pem";

/// Exit statuses and the cluster behaviours scripts rely on (shown by `stockctl --help`).
const AFTER_HELP: &str = "\
Exit status: 0 done; 1 the ledger rejected the write (or a read answered a rejection);
2 usage, configuration or connection error, or add-node added nothing;
3 add-node left the node a learner (catching up, or unreachable): it does not vote yet.

add-node answers within a few seconds with the node's state: `voter`; `learner, catching up
(matched index X of Y)`; `learner, unreachable`; or `not added` when nothing (or another node
id) answers at the address, in which case the membership is unchanged. Run it again to promote
a learner once it has caught up; `members` shows how far each member's log goes.

--connect may list nodes that are down: every node is asked at once and the first answers
are used, so a dead node does not slow a command down.";

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "stockctl",
    version,
    about = "Operate a stockd ledger",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Options of every command.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Options of every command.
#[derive(Args, Debug)]
pub struct Global {
    /// Node address HOST:PORT (repeatable or comma-separated) [default: 127.0.0.1:7400;
    /// `case` without it runs in-process]
    #[arg(
        long,
        short = 'c',
        global = true,
        value_delimiter = ',',
        value_name = "HOST:PORT"
    )]
    pub connect: Vec<String>,
    /// CA certificate of the cluster (PEM) [default: ./stockd-data/ca.pem if it exists]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Trust the node certificate (or CA) with this SHA-256 fingerprint instead of a CA file
    #[arg(long, global = true, value_name = "HEX", conflicts_with = "ca")]
    pub fingerprint: Option<String>,
    /// Print JSON (wire values: base units, ms since the epoch) instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// Request id of a write, hex (to retry a write exactly once from a script)
    #[arg(long, global = true, value_name = "HEX", value_parser = grammar::request_id)]
    pub request_id: Option<RequestId>,
    /// Longest wait for one attempt, ms (calls retry until 30 s have passed; init, add-node
    /// and remove-node wait at least 5 s, the node's own bound plus a round trip)
    #[arg(long, global = true, default_value_t = 5_000, value_name = "MS")]
    pub timeout_ms: u64,
}

/// `stockctl`'s commands. Lines are `SKU@LOC:QTY` like in case files; quantities are display
/// units; durations are `500ms`, `10s`, `15m`, `2h`, `2d`.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create or update a location.
    DefineLocation {
        /// Location id.
        id: String,
        /// warehouse | store | marketplace | dropship
        #[arg(value_parser = grammar::location_kind)]
        kind: LocationKind,
        /// Customers can collect orders here.
        #[arg(long)]
        pickup: bool,
        /// Latitude, decimal degrees.
        #[arg(long, value_parser = grammar::degrees_e6, allow_negative_numbers = true, requires = "lon")]
        lat: Option<i32>,
        /// Longitude, decimal degrees.
        #[arg(long, value_parser = grammar::degrees_e6, allow_negative_numbers = true, requires = "lat")]
        lon: Option<i32>,
        /// Channels allowed to sell from it (default: all).
        #[arg(long, value_delimiter = ',')]
        channels: Vec<String>,
    },
    /// Create or replace a group: an ordered list of locations (sourcing order).
    DefineGroup {
        /// Group id.
        id: String,
        /// Locations, in sourcing order.
        #[arg(required = true)]
        locations: Vec<String>,
    },
    /// Declare a SKU and its decimal scale.
    DefineSku {
        /// SKU id.
        sku: String,
        /// Decimal places of its base unit, 0..=6.
        #[arg(long, default_value_t = 0)]
        scale: u8,
    },
    /// Count: on_hand := QTY (compare-and-set with --expected).
    SetOnHand {
        /// SKU@LOCATION
        #[arg(value_parser = SkuAt::parse)]
        at: SkuAt,
        /// Counted quantity.
        #[arg(value_parser = Qty::parse, allow_negative_numbers = true)]
        qty: Qty,
        /// on_hand the counter saw (`conflict` if it differs).
        #[arg(long, value_parser = Qty::parse, allow_negative_numbers = true)]
        expected: Option<Qty>,
        /// Why.
        #[arg(long, default_value = "count")]
        reason: String,
    },
    /// Receipt (+) or shrinkage (-) of on_hand.
    Adjust {
        /// SKU@LOCATION
        #[arg(value_parser = SkuAt::parse)]
        at: SkuAt,
        /// Signed quantity.
        #[arg(value_parser = Qty::parse, allow_negative_numbers = true)]
        delta: Qty,
        /// Why.
        #[arg(long, default_value = "adjust")]
        reason: String,
    },
    /// Set the safety stock withheld from remote channels.
    SafetyStock {
        /// SKU@LOCATION
        #[arg(value_parser = SkuAt::parse)]
        at: SkuAt,
        /// Quantity.
        #[arg(value_parser = Qty::parse, allow_negative_numbers = true)]
        qty: Qty,
    },
    /// Mark units unavailable (damaged, quarantine, QC).
    Unavailable {
        /// SKU@LOCATION
        #[arg(value_parser = SkuAt::parse)]
        at: SkuAt,
        /// Quantity.
        #[arg(value_parser = Qty::parse, allow_negative_numbers = true)]
        qty: Qty,
        /// Why.
        #[arg(long, default_value = "unavailable")]
        reason: String,
    },
    /// Restore unavailable units to sellable stock.
    Restore {
        /// SKU@LOCATION
        #[arg(value_parser = SkuAt::parse)]
        at: SkuAt,
        /// Quantity.
        #[arg(value_parser = Qty::parse, allow_negative_numbers = true)]
        qty: Qty,
        /// Why.
        #[arg(long, default_value = "restore")]
        reason: String,
    },
    /// Counter sale (channel pos).
    Sell {
        /// SKU@LOCATION
        #[arg(value_parser = SkuAt::parse)]
        at: SkuAt,
        /// Quantity.
        #[arg(value_parser = Qty::parse, allow_negative_numbers = true)]
        qty: Qty,
    },
    /// Hold stock for a checkout: all lines or none.
    Reserve {
        /// Reservation id.
        reservation: String,
        /// Selling channel (web, app, pos, ...).
        channel: String,
        /// SKU@LOC:QTY lines; LOC may be a group or `all`.
        #[arg(required = true, value_parser = LineText::parse)]
        lines: Vec<LineText>,
        /// Time to live.
        #[arg(long, value_parser = grammar::duration_ms)]
        ttl: u64,
    },
    /// Set a hold's deadline to now + TTL.
    Extend {
        /// Reservation id.
        reservation: String,
        /// New time to live.
        #[arg(long, value_parser = grammar::duration_ms)]
        ttl: u64,
    },
    /// Release a hold.
    Release {
        /// Reservation id.
        reservation: String,
    },
    /// Place an order from a reservation (--from) or from lines (--channel and lines).
    PlaceOrder {
        /// Order id.
        order: String,
        /// SKU@LOC:QTY lines (with --channel); LOC may be a group or `all`.
        #[arg(value_parser = LineText::parse)]
        lines: Vec<LineText>,
        /// Reservation to turn into the order.
        #[arg(long, conflicts_with_all = ["channel", "lines"])]
        from: Option<String>,
        /// Selling channel of a direct order.
        #[arg(long)]
        channel: Option<String>,
        /// Collected at the line's store instead of shipped.
        #[arg(long)]
        pickup: bool,
        /// Collection window of a pickup order [default: 2d].
        #[arg(long, value_parser = grammar::duration_ms, requires = "pickup")]
        deadline: Option<u64>,
    },
    /// Record shipped or handed-over units.
    Fulfil {
        /// Order id.
        order: String,
        /// SKU@LOCATION:QTY lines.
        #[arg(required = true, value_parser = LineText::parse)]
        lines: Vec<LineText>,
    },
    /// Cancel unfulfilled units: these lines, or everything unfulfilled.
    Cancel {
        /// Order id.
        order: String,
        /// SKU@LOCATION:QTY lines (none: the whole order).
        #[arg(value_parser = LineText::parse)]
        lines: Vec<LineText>,
    },
    /// Move an order's allocation to another location.
    Reallocate {
        /// Order id.
        order: String,
        /// SKU id.
        sku: String,
        /// Current location.
        from: String,
        /// New location.
        to: String,
        /// Quantity.
        #[arg(value_parser = Qty::parse, allow_negative_numbers = true)]
        qty: Qty,
    },
    /// Tell the customer a pickup order is ready.
    Ready {
        /// Order id.
        order: String,
    },
    /// The customer collected a pickup order.
    PickedUp {
        /// Order id.
        order: String,
    },
    /// Receive returned units of an order.
    Return {
        /// RMA id.
        rma: String,
        /// Order id.
        order: String,
        /// SKU@RECEIVED_AT:QTY:restock|damaged|scrap lines.
        #[arg(required = true, value_parser = ReturnText::parse)]
        lines: Vec<ReturnText>,
    },
    /// Ship units from one location to another.
    ShipTransfer {
        /// Transfer id.
        transfer: String,
        /// SKU id.
        sku: String,
        /// Shipping location.
        from: String,
        /// Receiving location.
        to: String,
        /// Quantity.
        #[arg(value_parser = Qty::parse, allow_negative_numbers = true)]
        qty: Qty,
    },
    /// Receive a shipped transfer (the rest is lost in transit).
    ReceiveTransfer {
        /// Transfer id.
        transfer: String,
        /// Sellable units received.
        #[arg(long, value_parser = Qty::parse, default_value = "0")]
        received: Qty,
        /// Damaged units received.
        #[arg(long, value_parser = Qty::parse, default_value = "0")]
        damaged: Qty,
    },
    /// Balances and ATS of one or many SKUs at a location, a group or all locations.
    Availability {
        /// SKU ids.
        #[arg(required = true)]
        skus: Vec<String>,
        /// A location, a group or `all`.
        #[arg(long, default_value = "all")]
        at: String,
        /// Whose ATS (pos ignores safety stock).
        #[arg(long, default_value = "web")]
        channel: String,
        /// linearizable | local | at-least=INDEX
        #[arg(long, value_parser = grammar::consistency, default_value = "linearizable")]
        consistency: Consistency,
    },
    /// Locations with enough stock near a point, nearest first.
    Nearby {
        /// SKU id.
        sku: String,
        /// Latitude, decimal degrees.
        #[arg(long, value_parser = grammar::degrees_e6, allow_negative_numbers = true)]
        lat: i32,
        /// Longitude, decimal degrees.
        #[arg(long, value_parser = grammar::degrees_e6, allow_negative_numbers = true)]
        lon: i32,
        /// Search radius, km.
        #[arg(long)]
        radius_km: u32,
        /// Quantity wanted.
        #[arg(long, value_parser = Qty::parse, default_value = "1")]
        qty: Qty,
        /// Whose ATS.
        #[arg(long, default_value = "web")]
        channel: String,
        /// linearizable | local | at-least=INDEX
        #[arg(long, value_parser = grammar::consistency, default_value = "linearizable")]
        consistency: Consistency,
    },
    /// Show a reservation.
    Reservation {
        /// Reservation id.
        id: String,
        /// linearizable | local | at-least=INDEX
        #[arg(long, value_parser = grammar::consistency, default_value = "linearizable")]
        consistency: Consistency,
    },
    /// Show an order.
    Order {
        /// Order id.
        id: String,
        /// linearizable | local | at-least=INDEX
        #[arg(long, value_parser = grammar::consistency, default_value = "linearizable")]
        consistency: Consistency,
    },
    /// Show a return.
    Rma {
        /// RMA id.
        id: String,
        /// linearizable | local | at-least=INDEX
        #[arg(long, value_parser = grammar::consistency, default_value = "linearizable")]
        consistency: Consistency,
    },
    /// Show a transfer.
    Transfer {
        /// Transfer id.
        id: String,
        /// linearizable | local | at-least=INDEX
        #[arg(long, value_parser = grammar::consistency, default_value = "linearizable")]
        consistency: Consistency,
    },
    /// The change feed (quantities in base units); --follow for the live subscription.
    Changes {
        /// First sequence number (0: the oldest retained).
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// At most this many events (without --follow).
        #[arg(long, default_value_t = 100)]
        max: u32,
        /// Keep printing new events until interrupted.
        #[arg(long)]
        follow: bool,
        /// linearizable | local | at-least=INDEX
        #[arg(long, value_parser = grammar::consistency, default_value = "linearizable")]
        consistency: Consistency,
    },
    /// Status of every node of the cluster.
    Status,
    /// The members as the leader sees them: voter or learner, the last log index each one
    /// holds and its lag behind the leader.
    Members,
    /// Ledger digest of every node (or of --node), to compare replicas.
    Digest {
        /// Only these nodes (HOST:PORT).
        #[arg(long, value_parser = grammar::host_port)]
        node: Vec<String>,
    },
    /// Initialise a new cluster (sent to the first --connect node).
    Init {
        /// Voters as ID=HOST:PORT, this node included.
        #[arg(required = true, value_parser = grammar::member)]
        members: Vec<NodeAddr>,
    },
    /// Add a node to the cluster (started with `stockd --join`): it becomes a learner, then a
    /// voter once it has the log. Answers within a few seconds with the node's state; exit 3
    /// while it is a learner (run it again to promote it).
    AddNode {
        /// Node id.
        #[arg(value_parser = grammar::node_id)]
        id: u64,
        /// Its address.
        #[arg(value_parser = grammar::host_port)]
        addr: String,
    },
    /// Remove a node from the cluster. The removed node stops serving clients (it answers
    /// `removed`) once it learns of it, within seconds.
    RemoveNode {
        /// Node id.
        #[arg(value_parser = grammar::node_id)]
        id: u64,
    },
    /// Run scenario case files (../shared/cases/FORMAT.md): in-process, or against a live
    /// cluster with --connect.
    Case {
        /// `.case` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok,
    /// The ledger rejected the write (or the read), or a quantity was `invalid` locally.
    Rejected,
    /// Usage, configuration or connection error.
    Failed,
    /// `add-node` left the node a learner: run it again once it has caught up.
    Pending,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        match exit {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Rejected => ExitCode::from(1),
            Exit::Failed => ExitCode::from(2),
            Exit::Pending => ExitCode::from(3),
        }
    }
}

/// A usage, configuration or connection error (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail(pub String);

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Fail {
        Fail(e.to_string())
    }
}

/// Runs stockctl with the process's arguments.
pub fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(Fail(why)) => {
            eprintln!("stockctl: {why}");
            Exit::Failed.into()
        }
    }
}

/// Exit code when the reader of our output went away (128 + SIGPIPE, as a shell reports it).
const EXIT_BROKEN_PIPE: i32 = 141;

/// `stockctl ... | head` closes our stdout early; printing then fails, which `println!` turns
/// into a panic. Exit quietly instead, as tools killed by SIGPIPE do (found by the break-it
/// pass).
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("Broken pipe") {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        default(info);
    }));
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<Exit, Fail> {
    if let Cmd::Case { files } = &cli.command {
        return run_cases(&cli.global, files);
    }
    if cli.global.request_id.is_some() && !is_write(&cli.command) {
        return Err(Fail("--request-id only applies to writes".into()));
    }
    let config = client_config(&cli.global)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Fail(format!("tokio runtime: {e}")))?;
    runtime.block_on(async move {
        let first = config.nodes.first().cloned().unwrap_or_default();
        let client = Client::connect(config).await?;
        let out = Out {
            json: cli.global.json,
        };
        let exit = execute(&client, &out, &first, cli.global.request_id, cli.command).await;
        client.close();
        exit
    })
}

fn is_write(cmd: &Cmd) -> bool {
    !matches!(
        cmd,
        Cmd::Availability { .. }
            | Cmd::Nearby { .. }
            | Cmd::Reservation { .. }
            | Cmd::Order { .. }
            | Cmd::Rma { .. }
            | Cmd::Transfer { .. }
            | Cmd::Changes { .. }
            | Cmd::Status
            | Cmd::Members
            | Cmd::Digest { .. }
            | Cmd::Init { .. }
            | Cmd::AddNode { .. }
            | Cmd::RemoveNode { .. }
            | Cmd::Case { .. }
    )
}

/// The client configuration from the global options.
pub fn client_config(global: &Global) -> Result<ClientConfig, Fail> {
    let nodes = if global.connect.is_empty() {
        vec![DEFAULT_CONNECT.to_owned()]
    } else {
        global.connect.clone()
    };
    for node in &nodes {
        grammar::host_port(node).map_err(|e| Fail(e.to_string()))?;
    }
    let trust = match (&global.fingerprint, &global.ca) {
        (Some(hex), _) => Trust::Fingerprint(hex.clone()),
        (None, Some(path)) => {
            Trust::Ca(pki::load_certs(path).map_err(|e| Fail(format!("--ca: {e}")))?)
        }
        (None, None) => {
            let path = std::path::Path::new(DEFAULT_CA);
            if !path.exists() {
                return Err(Fail(format!(
                    "no trust anchor: pass --ca FILE or --fingerprint HEX ({DEFAULT_CA} does not \
                     exist here)"
                )));
            }
            Trust::Ca(pki::load_certs(path).map_err(|e| Fail(e.to_string()))?)
        }
    };
    let mut config = ClientConfig::new(nodes, trust);
    config.timeout_ms = global.timeout_ms.max(1);
    config.connect_timeout_ms = config.timeout_ms;
    Ok(config)
}

fn run_cases(global: &Global, files: &[PathBuf]) -> Result<Exit, Fail> {
    let mut cluster = if global.connect.is_empty() {
        None
    } else {
        Some(ClusterTarget::connect(client_config(global)?).map_err(|e| Fail(e.to_string()))?)
    };
    let mut failed = false;
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Fail(format!("cannot read {}: {e}", file.display())))?;
        let name = file.file_stem().map_or_else(
            || file.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let report = match &mut cluster {
            Some(target) => run_case(&name, &text, target, &options_for(&name)),
            None => run_case(
                &name,
                &text,
                &mut EngineTarget::default() as &mut dyn CaseTarget,
                &RunOptions::default(),
            ),
        };
        failed |= report.failure.is_some();
        println!("{report}");
    }
    Ok(if failed { Exit::Rejected } else { Exit::Ok })
}

/// Where output goes: text or JSON on stdout.
struct Out {
    json: bool,
}

impl Out {
    fn print(&self, text: impl FnOnce() -> String, json: impl FnOnce() -> Value) {
        if self.json {
            println!("{}", json());
        } else {
            println!("{}", text());
        }
    }
}

async fn execute(
    client: &Client,
    out: &Out,
    first_node: &str,
    request_id: Option<RequestId>,
    cmd: Cmd,
) -> Result<Exit, Fail> {
    match cmd {
        Cmd::Availability {
            skus,
            at,
            channel,
            consistency,
        } => availability(client, out, skus, &at, channel, consistency).await,
        Cmd::Nearby {
            sku,
            lat,
            lon,
            radius_km,
            qty,
            channel,
            consistency,
        } => {
            let facts = facts(client, &Needs::skus(vec![sku.clone()], None)).await?;
            let qty = match qty.to_base(facts.scale(&sku)) {
                Ok(q) => q,
                Err(why) => return Ok(local_invalid(out, &why.to_string())),
            };
            let query = Query::Nearby {
                sku: SkuId(sku.clone()),
                center: grammar::coordinates(lat, lon),
                radius_km,
                qty,
                channel: ChannelId(channel),
            };
            let result = client.read(query, consistency).await?;
            if let (false, Ok(Answer::Nearby(rows))) = (out.json, &result.answer) {
                println!("{}", show::nearby(rows, facts.scale(&sku)));
                return Ok(Exit::Ok);
            }
            Ok(print_read(client, out, result).await)
        }
        Cmd::Reservation { id, consistency } => {
            query(
                client,
                out,
                Query::Reservation(ReservationId(id)),
                consistency,
            )
            .await
        }
        Cmd::Order { id, consistency } => {
            query(client, out, Query::Order(OrderId(id)), consistency).await
        }
        Cmd::Rma { id, consistency } => {
            query(client, out, Query::Rma(RmaId(id)), consistency).await
        }
        Cmd::Transfer { id, consistency } => {
            query(client, out, Query::Transfer(TransferId(id)), consistency).await
        }
        Cmd::Changes {
            since,
            max,
            follow,
            consistency,
        } => changes(client, out, since, max, follow, consistency).await,
        Cmd::Status => status(client, out).await,
        Cmd::Members => {
            let leader = client.leader_status().await?;
            out.print(
                || show::members(&leader),
                || {
                    json!({"leader": leader.node.id, "term": leader.term,
                           "last_log_index": leader.last_log_index,
                           "members": leader.membership})
                },
            );
            Ok(Exit::Ok)
        }
        Cmd::Digest { node } => digest(client, out, node).await,
        Cmd::Init { members } => {
            client.init(first_node, members).await?;
            out.print(|| "ok: cluster initialised".into(), || json!({"ok": true}));
            Ok(Exit::Ok)
        }
        Cmd::AddNode { id, addr } => {
            let state = client
                .add_node(NodeAddr {
                    id,
                    addr: addr.clone(),
                })
                .await?;
            out.print(
                || show::member_state(id, &addr, &state),
                || member_state_json(id, &state),
            );
            Ok(added_exit(&state))
        }
        Cmd::RemoveNode { id } => {
            client.remove_node(id).await?;
            out.print(|| format!("ok: node {id} removed"), || json!({"ok": true}));
            Ok(Exit::Ok)
        }
        Cmd::Case { .. } => Err(Fail("case runs without a runtime".into())),
        write => {
            let request_id = request_id.unwrap_or_else(new_request_id);
            write_command(client, out, request_id, write).await
        }
    }
}

/// `add-node`'s answer as JSON: `{"node": ID, "state": "voter" | "catching_up" | "unreachable"
/// | "not_added", ...}` with `matched_index` and `target_index`, or `reason`.
pub fn member_state_json(id: u64, state: &MemberState) -> Value {
    match state {
        MemberState::Voter => json!({"node": id, "state": "voter"}),
        MemberState::CatchingUp {
            matched_index,
            target_index,
        } => json!({"node": id, "state": "catching_up", "matched_index": matched_index,
                    "target_index": target_index}),
        MemberState::Unreachable => json!({"node": id, "state": "unreachable"}),
        MemberState::NotAdded { reason } => {
            json!({"node": id, "state": "not_added", "reason": reason})
        }
    }
}

/// The exit status for `add-node`'s answer: done for a voter, pending for a learner, failed
/// when nothing was added.
pub fn added_exit(state: &MemberState) -> Exit {
    match state {
        MemberState::Voter => Exit::Ok,
        MemberState::CatchingUp { .. } | MemberState::Unreachable => Exit::Pending,
        MemberState::NotAdded { .. } => Exit::Failed,
    }
}

/// What a write needs to know from the cluster before it can be built.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// SKUs whose scale converts quantities.
    pub skus: Vec<String>,
    /// Line targets that may be groups (anything but `all`).
    pub places: Vec<String>,
    /// A location the SKUs are likely to be at (a cheap availability read for the scales).
    pub hint: Option<String>,
    /// A reservation whose SKUs matter (placing an order from it).
    pub reservation: Option<String>,
    /// A transfer whose SKU matters (receiving it).
    pub transfer: Option<String>,
}

impl Needs {
    fn skus(skus: Vec<String>, hint: Option<String>) -> Needs {
        Needs {
            skus,
            hint,
            ..Needs::default()
        }
    }
}

/// What the cluster said: scales, which places are groups, the transfer's SKU.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Decimal scale per SKU (unknown SKUs: 0, like the ledger's implicit SKUs).
    pub scales: Scales,
    /// Places that are groups (not locations).
    pub groups: HashSet<String>,
    /// SKU of the reservation or transfer named by the command.
    pub object_skus: Vec<String>,
}

impl Facts {
    fn scale(&self, sku: &str) -> u8 {
        self.scales.get(sku).copied().unwrap_or(0)
    }

    fn target(&self, place: &str) -> Target {
        if place == "all" {
            Target::All
        } else if self.groups.contains(place) {
            Target::Group(GroupId::from(place))
        } else {
            Target::Location(LocationId::from(place))
        }
    }
}

/// What a write command needs to know (a pure function of the command).
pub fn needs(cmd: &Cmd) -> Needs {
    let at = |a: &SkuAt| Needs::skus(vec![a.sku.clone()], Some(a.location.clone()));
    let lines = |lines: &[LineText], groups: bool| Needs {
        skus: lines.iter().map(|l| l.sku.clone()).collect(),
        places: if groups {
            lines
                .iter()
                .filter(|l| l.place != "all")
                .map(|l| l.place.clone())
                .collect()
        } else {
            Vec::new()
        },
        hint: lines.first().map(|l| l.place.clone()),
        ..Needs::default()
    };
    match cmd {
        Cmd::SetOnHand { at: a, .. }
        | Cmd::Adjust { at: a, .. }
        | Cmd::SafetyStock { at: a, .. }
        | Cmd::Unavailable { at: a, .. }
        | Cmd::Restore { at: a, .. }
        | Cmd::Sell { at: a, .. } => at(a),
        Cmd::Reserve { lines: l, .. } => lines(l, true),
        Cmd::PlaceOrder {
            lines: l,
            from: None,
            ..
        } => lines(l, true),
        Cmd::PlaceOrder { from: Some(r), .. } => Needs {
            reservation: Some(r.clone()),
            ..Needs::default()
        },
        Cmd::Fulfil { lines: l, .. } | Cmd::Cancel { lines: l, .. } => lines(l, false),
        Cmd::Reallocate { sku, from, .. } | Cmd::ShipTransfer { sku, from, .. } => {
            Needs::skus(vec![sku.clone()], Some(from.clone()))
        }
        Cmd::Return { lines: l, .. } => Needs::skus(
            l.iter().map(|l| l.sku.clone()).collect(),
            l.first().map(|l| l.received_at.clone()),
        ),
        Cmd::ReceiveTransfer { transfer, .. } => Needs {
            transfer: Some(transfer.clone()),
            ..Needs::default()
        },
        _ => Needs::default(),
    }
}

/// Asks the cluster what `needs` says (linearizable reads, so a scale just defined is seen).
async fn facts(client: &Client, needs: &Needs) -> Result<Facts, Fail> {
    let mut facts = Facts::default();
    let mut skus = needs.skus.clone();
    let mut hint = needs.hint.clone();
    let object = match (&needs.reservation, &needs.transfer) {
        (Some(r), _) => Some(Query::Reservation(ReservationId(r.clone()))),
        (None, Some(t)) => Some(Query::Transfer(TransferId(t.clone()))),
        (None, None) => None,
    };
    if let Some(query) = object {
        // A missing object is for the ledger to reject; only its SKUs matter here.
        match client.read(query, Consistency::Linearizable).await?.answer {
            Ok(Answer::Reservation(r)) => {
                hint = r.lines.first().map(|l| l.location.0.clone());
                facts.object_skus = r.lines.iter().map(|l| l.sku.0.clone()).collect();
            }
            Ok(Answer::Transfer(t)) => {
                hint = Some(t.to.0.clone());
                facts.object_skus = vec![t.sku.0.clone()];
            }
            _ => {}
        }
        skus.extend(facts.object_skus.iter().cloned());
    }
    let mut places: Vec<String> = needs.places.clone();
    places.sort();
    places.dedup();
    let mut queries: Vec<Query> = places
        .iter()
        .map(|p| Query::Location(LocationId(p.clone())))
        .collect();
    skus.sort();
    skus.dedup();
    let scale_query = |target: Target| Query::Availability {
        skus: skus.iter().map(|s| SkuId(s.clone())).collect(),
        target,
        channel: ChannelId::from("web"),
    };
    let hinted = hint.filter(|h| h != "all").map(LocationId);
    if !skus.is_empty() {
        queries.push(scale_query(
            hinted.clone().map_or(Target::All, Target::Location),
        ));
    }
    if queries.is_empty() {
        return Ok(facts);
    }
    let mut results = client.read_batch(queries, Consistency::Linearizable).await;
    let scales_result = if skus.is_empty() { None } else { results.pop() };
    for (place, result) in places.iter().zip(results) {
        if let Err(Rejection::NotFound {
            kind: ObjectKind::Location,
            ..
        }) = result?.answer
        {
            facts.groups.insert(place.clone());
        }
    }
    let mut answer = match scales_result {
        Some(result) => result?.answer,
        None => return Ok(facts),
    };
    if answer.is_err() && hinted.is_some() {
        answer = client
            .read(scale_query(Target::All), Consistency::Linearizable)
            .await?
            .answer;
    }
    if let Ok(Answer::Availability(entries)) = answer {
        facts.scales = entries.into_iter().map(|e| (e.sku.0, e.scale)).collect();
    }
    Ok(facts)
}

/// A write ready to send, with what its reply refers to.
#[derive(Debug)]
pub struct Built {
    /// The write.
    pub command: Command,
    /// For display units in the reply.
    pub context: ReplyContext,
}

/// Builds a write from its command line and the cluster's facts. `Err` is a local `invalid`
/// (a quantity with more decimals than its SKU's scale), with the explanation.
pub fn build(cmd: &Cmd, facts: &Facts) -> Result<Built, String> {
    let q = |sku: &str, qty: &Qty| qty.to_base(facts.scale(sku)).map_err(|e| e.to_string());
    let line = |l: &LineText| -> Result<Line, String> {
        Ok(Line {
            sku: SkuId(l.sku.clone()),
            target: facts.target(&l.place),
            qty: q(&l.sku, &l.qty)?,
        })
    };
    let located = |l: &LineText| -> Result<LocatedLine, String> {
        Ok(LocatedLine {
            sku: SkuId(l.sku.clone()),
            location: LocationId(l.place.clone()),
            qty: q(&l.sku, &l.qty)?,
        })
    };
    let mut context = ReplyContext {
        scales: facts.scales.clone(),
        ..ReplyContext::default()
    };
    let sku = |a: &SkuAt| SkuId(a.sku.clone());
    let loc = |a: &SkuAt| LocationId(a.location.clone());
    let command = match cmd {
        Cmd::DefineLocation {
            id,
            kind,
            pickup,
            lat,
            lon,
            channels,
        } => Command::DefineLocation(LocationDef {
            location: LocationId(id.clone()),
            kind: *kind,
            pickup: *pickup,
            coordinates: lat.zip(*lon).map(|(a, o)| grammar::coordinates(a, o)),
            channels: (!channels.is_empty())
                .then(|| channels.iter().map(|c| ChannelId(c.clone())).collect()),
        }),
        Cmd::DefineGroup { id, locations } => Command::DefineGroup {
            group: GroupId(id.clone()),
            locations: locations.iter().map(|l| LocationId(l.clone())).collect(),
        },
        Cmd::DefineSku { sku, scale } => Command::DefineSku {
            sku: SkuId(sku.clone()),
            scale: *scale,
        },
        Cmd::SetOnHand {
            at,
            qty,
            expected,
            reason,
        } => Command::SetOnHand {
            sku: sku(at),
            location: loc(at),
            qty: q(&at.sku, qty)?,
            reason: Reason(reason.clone()),
            expected: expected.as_ref().map(|e| q(&at.sku, e)).transpose()?,
        },
        Cmd::Adjust { at, delta, reason } => Command::Adjust {
            sku: sku(at),
            location: loc(at),
            delta: q(&at.sku, delta)?,
            reason: Reason(reason.clone()),
        },
        Cmd::SafetyStock { at, qty } => Command::SetSafetyStock {
            sku: sku(at),
            location: loc(at),
            qty: q(&at.sku, qty)?,
        },
        Cmd::Unavailable { at, qty, reason } => Command::MarkUnavailable {
            sku: sku(at),
            location: loc(at),
            qty: q(&at.sku, qty)?,
            reason: Reason(reason.clone()),
        },
        Cmd::Restore { at, qty, reason } => Command::RestoreUnavailable {
            sku: sku(at),
            location: loc(at),
            qty: q(&at.sku, qty)?,
            reason: Reason(reason.clone()),
        },
        Cmd::Sell { at, qty } => Command::Sell {
            sku: sku(at),
            location: loc(at),
            qty: q(&at.sku, qty)?,
        },
        Cmd::Reserve {
            reservation,
            channel,
            lines,
            ttl,
        } => Command::Reserve {
            reservation: ReservationId(reservation.clone()),
            channel: ChannelId(channel.clone()),
            lines: lines.iter().map(line).collect::<Result<_, _>>()?,
            ttl_ms: *ttl,
        },
        Cmd::Extend { reservation, ttl } => Command::Extend {
            reservation: ReservationId(reservation.clone()),
            ttl_ms: *ttl,
        },
        Cmd::Release { reservation } => Command::Release {
            reservation: ReservationId(reservation.clone()),
        },
        Cmd::PlaceOrder {
            order,
            lines,
            from,
            channel,
            pickup,
            deadline,
        } => Command::PlaceOrder {
            order: OrderId(order.clone()),
            source: match (from, channel) {
                (Some(r), _) => OrderSource::Reservation(ReservationId(r.clone())),
                (None, Some(c)) if !lines.is_empty() => OrderSource::Lines {
                    channel: ChannelId(c.clone()),
                    lines: lines.iter().map(line).collect::<Result<_, _>>()?,
                },
                _ => {
                    return Err(usage(
                        "place-order needs --from RES, or --channel and lines",
                    ))
                }
            },
            fulfilment: if *pickup {
                Fulfilment::Pickup {
                    deadline_ms: deadline.unwrap_or(DEFAULT_PICKUP_MS),
                }
            } else {
                Fulfilment::Ship
            },
        },
        Cmd::Fulfil { order, lines } => Command::Fulfil {
            order: OrderId(order.clone()),
            lines: lines.iter().map(located).collect::<Result<_, _>>()?,
        },
        Cmd::Cancel { order, lines } => Command::Cancel {
            order: OrderId(order.clone()),
            lines: if lines.is_empty() {
                None
            } else {
                Some(lines.iter().map(located).collect::<Result<_, _>>()?)
            },
        },
        Cmd::Reallocate {
            order,
            sku,
            from,
            to,
            qty,
        } => Command::Reallocate {
            order: OrderId(order.clone()),
            sku: SkuId(sku.clone()),
            from: LocationId(from.clone()),
            to: LocationId(to.clone()),
            qty: q(sku, qty)?,
        },
        Cmd::Ready { order } => Command::ReadyForPickup {
            order: OrderId(order.clone()),
        },
        Cmd::PickedUp { order } => Command::PickedUp {
            order: OrderId(order.clone()),
        },
        Cmd::Return { rma, order, lines } => Command::Return {
            rma: RmaId(rma.clone()),
            order: OrderId(order.clone()),
            lines: lines
                .iter()
                .map(|l| {
                    Ok(ReturnLine {
                        sku: SkuId(l.sku.clone()),
                        qty: q(&l.sku, &l.qty)?,
                        received_at: LocationId(l.received_at.clone()),
                        disposition: l.disposition,
                    })
                })
                .collect::<Result<_, String>>()?,
        },
        Cmd::ShipTransfer {
            transfer,
            sku,
            from,
            to,
            qty,
        } => Command::ShipTransfer {
            transfer: TransferId(transfer.clone()),
            sku: SkuId(sku.clone()),
            from: LocationId(from.clone()),
            to: LocationId(to.clone()),
            qty: q(sku, qty)?,
        },
        Cmd::ReceiveTransfer {
            transfer,
            received,
            damaged,
        } => {
            let sku = facts.object_skus.first().cloned().unwrap_or_default();
            Command::ReceiveTransfer {
                transfer: TransferId(transfer.clone()),
                received: q(&sku, received)?,
                damaged: q(&sku, damaged)?,
            }
        }
        _ => return Err(usage("not a write")),
    };
    match cmd {
        Cmd::SetOnHand { at, .. }
        | Cmd::Adjust { at, .. }
        | Cmd::SafetyStock { at, .. }
        | Cmd::Unavailable { at, .. }
        | Cmd::Restore { at, .. }
        | Cmd::Sell { at, .. } => context.sku = Some(at.sku.clone()),
        Cmd::ReceiveTransfer { .. } => context.sku = facts.object_skus.first().cloned(),
        Cmd::Reserve { lines, .. } | Cmd::PlaceOrder { lines, .. } => {
            context.line_skus = lines.iter().map(|l| l.sku.clone()).collect();
        }
        _ => {}
    }
    if let Cmd::PlaceOrder { from: Some(_), .. } = cmd {
        context.line_skus = facts.object_skus.clone();
    }
    Ok(Built { command, context })
}

/// Marks a build error that is a usage error rather than a local `invalid`.
const USAGE: &str = "usage: ";

fn usage(why: &str) -> String {
    format!("{USAGE}{why}")
}

async fn write_command(
    client: &Client,
    out: &Out,
    request_id: RequestId,
    cmd: Cmd,
) -> Result<Exit, Fail> {
    let facts = facts(client, &needs(&cmd)).await?;
    let built = match build(&cmd, &facts) {
        Ok(built) => built,
        Err(why) => match why.strip_prefix(USAGE) {
            Some(usage) => return Err(Fail(usage.to_owned())),
            None => return Ok(local_invalid(out, &why)),
        },
    };
    let request = engine::Request {
        request_id,
        command: built.command,
    };
    let result = client.write_with_id(request).await?;
    Ok(print_outcome(
        out,
        &result.outcome,
        result.request_id,
        result.log_index,
        &built.context,
    ))
}

fn print_outcome(
    out: &Out,
    outcome: &Outcome,
    request_id: RequestId,
    log_index: u64,
    context: &ReplyContext,
) -> Exit {
    let trailer = format!("  request={request_id} log={log_index}");
    match outcome {
        Ok(reply) => {
            out.print(
                || format!("{}\n{trailer}", show::reply(reply, context)),
                || {
                    json!({"code": "ok", "request_id": request_id.to_string(),
                           "log_index": log_index, "reply": reply})
                },
            );
            Exit::Ok
        }
        Err(rejection) => {
            out.print(
                || {
                    format!(
                        "rejected: {}\n{trailer}",
                        show::rejection(rejection, &context.scales)
                    )
                },
                || {
                    json!({"code": rejection.code().as_str(),
                           "request_id": request_id.to_string(), "log_index": log_index,
                           "rejection": rejection, "message": rejection.to_string()})
                },
            );
            Exit::Rejected
        }
    }
}

fn local_invalid(out: &Out, why: &str) -> Exit {
    out.print(
        || format!("rejected: invalid: {why} (not sent)"),
        || json!({"code": "invalid", "message": why, "sent": false}),
    );
    Exit::Rejected
}

async fn availability(
    client: &Client,
    out: &Out,
    skus: Vec<String>,
    at: &str,
    channel: String,
    consistency: Consistency,
) -> Result<Exit, Fail> {
    let needs = Needs {
        places: if at == "all" {
            vec![]
        } else {
            vec![at.to_owned()]
        },
        ..Needs::default()
    };
    let facts = facts(client, &needs).await?;
    let query = Query::Availability {
        skus: skus.into_iter().map(SkuId).collect(),
        target: facts.target(at),
        channel: ChannelId(channel),
    };
    let result = client.read(query, consistency).await?;
    Ok(print_read(client, out, result).await)
}

async fn query(
    client: &Client,
    out: &Out,
    query: Query,
    consistency: Consistency,
) -> Result<Exit, Fail> {
    let result = client.read(query, consistency).await?;
    Ok(print_read(client, out, result).await)
}

/// The SKUs (and a location) of a view, for its scales.
fn view_skus(answer: &Answer) -> (Vec<String>, Option<String>) {
    match answer {
        Answer::Reservation(v) => (
            v.lines.iter().map(|l| l.sku.0.clone()).collect(),
            v.lines.first().map(|l| l.location.0.clone()),
        ),
        Answer::Order(v) => (
            v.lines.iter().map(|l| l.sku.0.clone()).collect(),
            v.lines.first().map(|l| l.location.0.clone()),
        ),
        Answer::Rma(v) => (
            v.lines.iter().map(|l| l.sku.0.clone()).collect(),
            v.lines.first().map(|l| l.received_at.0.clone()),
        ),
        Answer::Transfer(TransferView { sku, from, .. }) => {
            (vec![sku.0.clone()], Some(from.0.clone()))
        }
        _ => (vec![], None),
    }
}

async fn print_read(client: &Client, out: &Out, result: ReadResult) -> Exit {
    let applied = result.applied_index;
    let answer = match result.answer {
        Ok(answer) => answer,
        Err(rejection) => {
            out.print(
                || format!("rejected: {rejection}"),
                || {
                    json!({"code": rejection.code().as_str(), "applied_index": applied,
                           "rejection": rejection, "message": rejection.to_string()})
                },
            );
            return Exit::Rejected;
        }
    };
    if out.json {
        let answer = match &answer {
            Answer::Changes(page) => json!({"Changes": {
                "events": page.events.iter().map(event_json).collect::<Vec<_>>(),
                "next": page.next, "oldest": page.oldest, "truncated": page.truncated}}),
            other => json!(other),
        };
        println!(
            "{}",
            json!({"code": "ok", "applied_index": applied, "answer": answer})
        );
        return Exit::Ok;
    }
    let (skus, hint) = view_skus(&answer);
    let scales = if skus.is_empty() {
        Scales::new()
    } else {
        facts(client, &Needs::skus(skus, hint))
            .await
            .map(|f| f.scales)
            .unwrap_or_default()
    };
    let text = match &answer {
        Answer::Availability(entries) => show::availability(entries),
        Answer::Nearby(rows) => show::nearby(rows, 0),
        Answer::Reservation(v) => show::reservation(v, &scales),
        Answer::Order(v) => show::order(v, &scales),
        Answer::Rma(v) => show::rma(v, &scales),
        Answer::Transfer(v) => show::transfer(v, &scales),
        Answer::Changes(page) => show::changes(page),
        other => format!("{other:?}"),
    };
    println!("{text}");
    Exit::Ok
}

/// A change event as JSON, with its request id in hex like everywhere in stockctl.
pub(crate) fn event_json(e: &ChangeEvent) -> Value {
    // serde_json has no 128-bit integers: serialize without the id, then add it as hex
    // (found by the break-it pass: `stockctl --json changes` panicked on any real request id).
    let without_id = ChangeEvent {
        request_id: None,
        ..e.clone()
    };
    let mut value = serde_json::to_value(&without_id).unwrap_or(Value::Null);
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "request_id".into(),
            e.request_id
                .map_or(Value::Null, |r| Value::String(r.to_string())),
        );
    }
    value
}

async fn changes(
    client: &Client,
    out: &Out,
    since: u64,
    max: u32,
    follow: bool,
    consistency: Consistency,
) -> Result<Exit, Fail> {
    if !follow {
        return query(client, out, Query::Changes { since, max }, consistency).await;
    }
    let mut subscription = client.subscribe(since).await?;
    loop {
        match subscription.next().await {
            Ok(event) => out.print(|| show::event(&event), || event_json(&event)),
            // Nothing was skipped: the next call resubscribes from the first event not shown.
            Err(cut @ ClientError::SubscriptionCut { .. }) => {
                eprintln!("stockctl: {cut}; resuming");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn status(client: &Client, out: &Out) -> Result<Exit, Fail> {
    let mut reports = client.status().await;
    // By node id; unreachable nodes last, in the order they were listed.
    reports.sort_by_key(|r| r.status.as_ref().map_or(u64::MAX, |s| s.node.id));
    let answered = reports.iter().filter(|r| r.status.is_ok()).count();
    if out.json {
        let nodes: Vec<Value> = reports
            .iter()
            .map(|r| match &r.status {
                Ok(s) => json!({"node": r.node, "status": s}),
                Err(e) => json!({"node": r.node, "error": e.to_string()}),
            })
            .collect();
        println!("{}", Value::Array(nodes));
    } else {
        for r in &reports {
            match &r.status {
                Ok(s) => println!("{}", show::status(&r.node, s)),
                Err(e) => println!("{}: unreachable: {e}", r.node),
            }
        }
    }
    Ok(if answered == 0 {
        Exit::Failed
    } else {
        Exit::Ok
    })
}

async fn digest(client: &Client, out: &Out, nodes: Vec<String>) -> Result<Exit, Fail> {
    let nodes = if nodes.is_empty() {
        client.status().await.into_iter().map(|r| r.node).collect()
    } else {
        nodes
    };
    let mut rows = Vec::new();
    let mut failed = false;
    for node in nodes {
        let result = client.digest_of(&node).await;
        failed |= result.is_err();
        rows.push((node, result));
    }
    out.print(
        || {
            rows.iter()
                .map(|(node, r)| match r {
                    Ok(d) => format!("{node}: applied={} digest={}", d.applied_index, d.digest),
                    Err(e) => format!("{node}: unreachable: {e}"),
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
        || {
            Value::Array(
                rows.iter()
                    .map(|(node, r)| match r {
                        Ok(d) => json!({"node": node, "applied_index": d.applied_index,
                                        "digest": d.digest}),
                        Err(e) => json!({"node": node, "error": e.to_string()}),
                    })
                    .collect(),
            )
        },
    );
    Ok(if failed { Exit::Failed } else { Exit::Ok })
}

#[cfg(test)]
mod tests;
