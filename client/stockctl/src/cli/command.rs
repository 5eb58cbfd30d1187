//! stockctl's command line (clap): global options and commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use engine::{LocationKind, RequestId};
use protocol::{Consistency, NodeAddr};

use crate::grammar::{self, LineText, PartText, Qty, ReturnText, SkuAt};

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
    /// This client's certificate (PEM, issued by `stockd certs --client`) [default: admin.pem
    /// next to the CA file, as the embedded default and `stockd dev` write it]
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key of `--cert` (PEM)
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
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
        /// The customer the hold is for (counted against purchase limits).
        #[arg(long)]
        customer: Option<String>,
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
        /// The customer a direct order is for (counted against purchase limits; an order
        /// from a reservation takes the reservation's).
        #[arg(long, conflicts_with = "from")]
        customer: Option<String>,
    },
    /// Define (or redefine) a kit: a SKU made of components, with no stock of its own.
    Kit {
        /// The kit's SKU id.
        kit: String,
        /// COMPONENT:QTY per kit, in the component's display units.
        #[arg(required = true, value_parser = PartText::parse)]
        components: Vec<PartText>,
    },
    /// A return and a new order in one all-or-nothing write (a size exchange).
    Exchange {
        /// RMA id of the return.
        rma: String,
        /// The original order.
        order: String,
        /// SKU@RECEIVED_AT:QTY:restock|damaged|scrap (repeatable).
        #[arg(long = "return", required = true, value_parser = ReturnText::parse)]
        returns: Vec<ReturnText>,
        /// The new order's id.
        #[arg(long)]
        new_order: String,
        /// The new order's channel.
        #[arg(long)]
        channel: String,
        /// The new order's SKU@LOC:QTY lines; LOC may be a group or `all`.
        #[arg(required = true, value_parser = LineText::parse)]
        lines: Vec<LineText>,
        /// Collected at the line's store instead of shipped.
        #[arg(long)]
        pickup: bool,
        /// Collection window of a pickup order [default: 2d].
        #[arg(long, value_parser = grammar::duration_ms, requires = "pickup")]
        deadline: Option<u64>,
    },
    /// Set (or change, or with 0 remove) a SKU's per-customer purchase limit.
    Limit {
        /// SKU id.
        sku: String,
        /// Units a customer may hold plus buy within the window (0 removes the limit).
        #[arg(value_parser = Qty::parse)]
        qty: Qty,
        /// Rolling window (1m..=90d); required unless QTY is 0.
        #[arg(long, value_parser = grammar::duration_ms)]
        window: Option<u64>,
        /// Lines without a customer are refused (`invalid`).
        #[arg(long)]
        strict: bool,
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
        /// Only events at these locations (repeatable or comma-separated): a store's alerts.
        #[arg(long, value_delimiter = ',', value_name = "LOCATION")]
        at: Vec<String>,
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
    /// Revoke a credential, or list the revoked ones (admin; SPEC section 7).
    Credentials {
        /// What to do.
        #[command(subcommand)]
        action: CredentialsCmd,
    },
    /// Bearer tokens for the HTTP API (admin).
    Token {
        /// What to do.
        #[command(subcommand)]
        action: TokenCmd,
    },
    /// The retention settings: how many finished objects, request ids and change-feed events
    /// the cluster keeps, and for how long (replicated: the same on every node). `set` is
    /// admin only.
    Retention {
        /// What to do.
        #[command(subcommand)]
        action: RetentionCmd,
    },
    /// The identity this stockctl presents (from --cert, or the default admin identity):
    /// name, role, scope, credential id and expiry. Reads the certificate only.
    Whoami,
    /// Run scenario case files (../shared/cases/FORMAT.md): in-process, or against a live
    /// cluster with --connect.
    Case {
        /// `.case` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// `stockctl token` subcommands.
#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Issue a token: it is printed once (the cluster stores only its hash); its id is the
    /// credential id that `stockctl credentials revoke` takes.
    Create {
        /// The principal's name (default: token).
        #[arg(long, default_value = "token")]
        name: String,
        /// The role: reader, checkout, store, ops or admin.
        #[arg(long)]
        role: String,
        /// A channel a `checkout` token sells on (repeat for several).
        #[arg(long)]
        channel: Vec<String>,
        /// A location a `store` token acts at (repeat for several).
        #[arg(long)]
        location: Vec<String>,
        /// Validity, days.
        #[arg(long, default_value_t = pki::CLIENT_DAYS_DEFAULT)]
        days: u32,
    },
}

/// `stockctl credentials ...`.
#[derive(Subcommand, Debug)]
pub enum CredentialsCmd {
    /// Put a credential on the cluster's deny list: every node refuses it within a second,
    /// on open connections too.
    Revoke {
        /// The credential id (a certificate's serial, hex: see `stockctl whoami` or the
        /// line `stockd certs --client` printed).
        id: String,
        /// The certificate itself, to keep the entry only until it expires (default: keep it
        /// for the longest validity a client certificate can have).
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
    },
    /// The revoked credentials.
    List,
}

/// `stockctl retention ...`.
#[derive(Subcommand, Debug)]
pub enum RetentionCmd {
    /// The settings in force (read from the leader).
    Show,
    /// Change some settings (admin): the current settings are read, the values given replace
    /// theirs, and the whole set is written (one replicated write; a value outside its range is
    /// rejected `invalid` naming the field, and nothing changes).
    Set(RetentionChange),
}

/// The values `retention set` changes; each one left out keeps its current value. Ranges
/// (docs/OPERATIONS.md, "Retention"): finished entries 1..=10,000,000, finished days
/// 1..=90, dedup entries 524,288..=4,000,000, dedup window 60..=86,400 s, feed events
/// 10,000..=1,000,000.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
#[group(required = true, multiple = true)]
pub struct RetentionChange {
    /// Finished reservations, orders, returns and transfers kept, all kinds together; the
    /// oldest finished go first (`retired_entries`).
    #[arg(long, value_name = "N")]
    pub finished_entries: Option<u64>,
    /// Days a finished object stays queryable at most (`retired_ms`).
    #[arg(long, value_name = "D")]
    pub finished_days: Option<u64>,
    /// Request outcomes remembered for deduplication (`dedup_entries`).
    #[arg(long, value_name = "N")]
    pub dedup_entries: Option<u64>,
    /// Seconds a request id is remembered (`dedup_window_ms`).
    #[arg(long, value_name = "S")]
    pub dedup_window_s: Option<u64>,
    /// Change-feed events kept (`feed_events`).
    #[arg(long, value_name = "N")]
    pub feed_events: Option<u64>,
}

/// Whether a command is a write (`--request-id` applies to writes only).
pub(super) fn is_write(cmd: &Cmd) -> bool {
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
            | Cmd::Credentials {
                action: CredentialsCmd::List
            }
            | Cmd::Retention {
                action: RetentionCmd::Show
            }
            | Cmd::Whoami
    )
}
