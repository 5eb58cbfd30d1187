//! The label values of the request metrics: which front answered (`transport`), what was asked
//! (`operation`) and how it ended (`outcome`). Each is a closed enum with a dense index, so a
//! request finds its series by arithmetic, never by hashing or formatting a label.

use engine::{Code, Command, Query};
use protocol::{AdminOp, Op, OpResult, ServerError};

/// The front that answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// QUIC + postcard (docs/PROTOCOL.md).
    Quic,
    /// HTTP/JSON (SPEC section 6).
    Http,
}

impl Transport {
    /// Every transport, in index order.
    pub const ALL: [Transport; 2] = [Transport::Quic, Transport::Http];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::Http => "http",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a request asked: a write by its command (SPEC section 3's names), a read by its query,
/// or a node operation. Reads carry the query's name (`availability`, `reservation`...);
/// `ledger_status` is the ledger's counters query, `status` the node's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is its label value, documented by `as_str`
pub enum Operation {
    DefineLocation,
    DefineGroup,
    DefineSku,
    SetOnHand,
    Adjust,
    SetSafetyStock,
    MarkUnavailable,
    RestoreUnavailable,
    Sell,
    Reserve,
    Extend,
    Release,
    PlaceOrder,
    Fulfil,
    Cancel,
    Reallocate,
    ReadyForPickup,
    PickedUp,
    Return,
    ShipTransfer,
    ReceiveTransfer,
    RevokeCredential,
    CreateToken,
    Availability,
    Nearby,
    Reservation,
    Order,
    Rma,
    Transfer,
    Changes,
    LedgerStatus,
    Location,
    Revoked,
    SkuSearch,
    Pickups,
    Status,
    Digest,
    Subscribe,
    Init,
    AddNode,
    RemoveNode,
    DefineKit,
    Exchange,
    SetPurchaseLimit,
    SetRetention,
    Retention,
}

impl Operation {
    /// How many operations there are.
    pub const COUNT: usize = Operation::Retention as usize + 1;

    /// The operation of a write.
    pub fn of_command(command: &Command) -> Operation {
        match command {
            Command::DefineLocation(_) => Operation::DefineLocation,
            Command::DefineGroup { .. } => Operation::DefineGroup,
            Command::DefineSku { .. } => Operation::DefineSku,
            Command::SetOnHand { .. } => Operation::SetOnHand,
            Command::Adjust { .. } => Operation::Adjust,
            Command::SetSafetyStock { .. } => Operation::SetSafetyStock,
            Command::MarkUnavailable { .. } => Operation::MarkUnavailable,
            Command::RestoreUnavailable { .. } => Operation::RestoreUnavailable,
            Command::Sell { .. } => Operation::Sell,
            Command::Reserve { .. } => Operation::Reserve,
            Command::Extend { .. } => Operation::Extend,
            Command::Release { .. } => Operation::Release,
            Command::PlaceOrder { .. } => Operation::PlaceOrder,
            Command::Fulfil { .. } => Operation::Fulfil,
            Command::Cancel { .. } => Operation::Cancel,
            Command::Reallocate { .. } => Operation::Reallocate,
            Command::ReadyForPickup { .. } => Operation::ReadyForPickup,
            Command::PickedUp { .. } => Operation::PickedUp,
            Command::Return { .. } => Operation::Return,
            Command::ShipTransfer { .. } => Operation::ShipTransfer,
            Command::ReceiveTransfer { .. } => Operation::ReceiveTransfer,
            Command::RevokeCredential { .. } => Operation::RevokeCredential,
            Command::CreateToken(_) => Operation::CreateToken,
            Command::DefineKit { .. } => Operation::DefineKit,
            // A customer's write is counted as the reserve or place_order it wraps.
            Command::AsCustomer { command, .. } => match **command {
                Command::AsCustomer { .. } => Operation::Reserve,
                ref inner => Operation::of_command(inner),
            },
            Command::Exchange(_) => Operation::Exchange,
            Command::SetPurchaseLimit { .. } => Operation::SetPurchaseLimit,
            Command::SetRetention(_) => Operation::SetRetention,
        }
    }

    /// The operation of a read.
    pub fn of_query(query: &Query) -> Operation {
        match query {
            Query::Availability { .. } => Operation::Availability,
            Query::Nearby { .. } => Operation::Nearby,
            Query::Reservation(_) => Operation::Reservation,
            Query::Order(_) => Operation::Order,
            Query::Rma(_) => Operation::Rma,
            Query::Transfer(_) => Operation::Transfer,
            Query::Changes { .. } | Query::ChangesAt { .. } => Operation::Changes,
            Query::Status => Operation::LedgerStatus,
            Query::Location(_) => Operation::Location,
            Query::Revoked => Operation::Revoked,
            Query::SkuSearch { .. } => Operation::SkuSearch,
            Query::Pickups { .. } => Operation::Pickups,
            Query::Retention => Operation::Retention,
        }
    }

    /// The operation of a protocol operation.
    pub fn of_op(op: &Op) -> Operation {
        match op {
            Op::Write(request) => Operation::of_command(&request.command),
            Op::Read { query, .. } => Operation::of_query(query),
            Op::Status => Operation::Status,
            Op::Digest => Operation::Digest,
            Op::Subscribe { .. } | Op::SubscribeAt { .. } => Operation::Subscribe,
            Op::Admin(AdminOp::Init { .. }) => Operation::Init,
            Op::Admin(AdminOp::AddNode(_)) => Operation::AddNode,
            Op::Admin(AdminOp::RemoveNode { .. }) => Operation::RemoveNode,
        }
    }

    /// The label value: the write's name in SPEC section 3 (`engine::Command::name`), the
    /// query's, or the node operation's.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::DefineLocation => "define_location",
            Operation::DefineGroup => "define_group",
            Operation::DefineSku => "define_sku",
            Operation::SetOnHand => "set_on_hand",
            Operation::Adjust => "adjust",
            Operation::SetSafetyStock => "set_safety_stock",
            Operation::MarkUnavailable => "mark_unavailable",
            Operation::RestoreUnavailable => "restore_unavailable",
            Operation::Sell => "sell",
            Operation::Reserve => "reserve",
            Operation::Extend => "extend",
            Operation::Release => "release",
            Operation::PlaceOrder => "place_order",
            Operation::Fulfil => "fulfil",
            Operation::Cancel => "cancel",
            Operation::Reallocate => "reallocate",
            Operation::ReadyForPickup => "ready_for_pickup",
            Operation::PickedUp => "picked_up",
            Operation::Return => "return",
            Operation::ShipTransfer => "ship_transfer",
            Operation::ReceiveTransfer => "receive_transfer",
            Operation::RevokeCredential => "revoke_credential",
            Operation::CreateToken => "create_token",
            Operation::Availability => "availability",
            Operation::Nearby => "nearby",
            Operation::Reservation => "reservation",
            Operation::Order => "order",
            Operation::Rma => "rma",
            Operation::Transfer => "transfer",
            Operation::Changes => "changes",
            Operation::LedgerStatus => "ledger_status",
            Operation::Location => "location",
            Operation::Revoked => "revoked",
            Operation::SkuSearch => "sku_search",
            Operation::Pickups => "pickups",
            Operation::Status => "status",
            Operation::Digest => "digest",
            Operation::Subscribe => "subscribe",
            Operation::Init => "init",
            Operation::AddNode => "add_node",
            Operation::RemoveNode => "remove_node",
            Operation::DefineKit => "define_kit",
            Operation::Exchange => "exchange",
            Operation::SetPurchaseLimit => "set_purchase_limit",
            Operation::SetRetention => "set_retention",
            Operation::Retention => "retention",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a request ended: the ledger's stable code (`ok` for a write applied or a read
/// answered), the node's error code (docs/PROTOCOL.md, "Errors"), or `malformed` for a request
/// a front could not turn into an operation (an HTTP body that does not parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (`ok`) or rejected by the ledger with this code.
    Ledger(Code),
    /// `not_leader`.
    NotLeader,
    /// `busy`.
    Busy,
    /// `not_ready`.
    NotReady,
    /// `timeout`.
    Timeout,
    /// `unavailable`.
    Unavailable,
    /// `invalid_op`.
    InvalidOp,
    /// `internal`.
    Internal,
    /// `removed`.
    Removed,
    /// `forbidden`.
    Forbidden,
    /// `malformed`: never became an operation.
    Malformed,
}

/// Node outcomes after the ledger's codes, in index order.
const NODE_OUTCOMES: [Outcome; 10] = [
    Outcome::NotLeader,
    Outcome::Busy,
    Outcome::NotReady,
    Outcome::Timeout,
    Outcome::Unavailable,
    Outcome::InvalidOp,
    Outcome::Internal,
    Outcome::Removed,
    Outcome::Forbidden,
    Outcome::Malformed,
];

impl Outcome {
    /// How many outcomes there are.
    pub const COUNT: usize = Code::ALL.len() + NODE_OUTCOMES.len();

    /// `ok`.
    pub const OK: Outcome = Outcome::Ledger(Code::Ok);

    /// The outcome of a node error.
    pub fn of_error(error: &ServerError) -> Outcome {
        match error {
            ServerError::NotLeader { .. } => Outcome::NotLeader,
            ServerError::Busy => Outcome::Busy,
            ServerError::NotReady => Outcome::NotReady,
            ServerError::Timeout => Outcome::Timeout,
            ServerError::Unavailable { .. } => Outcome::Unavailable,
            ServerError::InvalidOp { .. } => Outcome::InvalidOp,
            ServerError::Internal { .. } => Outcome::Internal,
            ServerError::Removed { .. } => Outcome::Removed,
            ServerError::Forbidden { .. } => Outcome::Forbidden,
        }
    }

    /// The outcome of a protocol result.
    pub fn of_result(result: &OpResult) -> Outcome {
        match result {
            OpResult::Written { outcome, .. } => Outcome::Ledger(engine::code_of(outcome)),
            OpResult::Read { answer: Err(r), .. } => Outcome::Ledger(r.code()),
            OpResult::Failed(error) => Outcome::of_error(error),
            OpResult::Read { answer: Ok(_), .. }
            | OpResult::Status(_)
            | OpResult::Digest { .. }
            | OpResult::AdminDone
            | OpResult::Subscribed
            | OpResult::NodeAdded(_) => Outcome::OK,
        }
    }

    /// The label value: the stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ledger(code) => code.as_str(),
            Outcome::NotLeader => "not_leader",
            Outcome::Busy => "busy",
            Outcome::NotReady => "not_ready",
            Outcome::Timeout => "timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::InvalidOp => "invalid_op",
            Outcome::Internal => "internal",
            Outcome::Removed => "removed",
            Outcome::Forbidden => "forbidden",
            Outcome::Malformed => "malformed",
        }
    }

    fn index(self) -> usize {
        match self {
            Outcome::Ledger(code) => code as usize,
            other => {
                let at = NODE_OUTCOMES.iter().position(|o| *o == other);
                Code::ALL.len() + at.unwrap_or(NODE_OUTCOMES.len() - 1)
            }
        }
    }

    /// The outcome at `index` (the inverse of its index).
    fn at(index: usize) -> Outcome {
        match Code::ALL.get(index) {
            Some(code) => Outcome::Ledger(*code),
            None => NODE_OUTCOMES[index - Code::ALL.len()],
        }
    }
}

/// One request series: where it sits in the dense table of request metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestKey {
    /// The front.
    pub transport: Transport,
    /// What was asked.
    pub operation: Operation,
    /// How it ended.
    pub outcome: Outcome,
}

/// Series in the request table.
pub(super) const REQUEST_KEYS: usize = Transport::ALL.len() * Operation::COUNT * Outcome::COUNT;

impl RequestKey {
    /// The key's place in the table (`< REQUEST_KEYS`).
    pub(super) fn index(self) -> usize {
        (self.transport.index() * Operation::COUNT + self.operation.index()) * Outcome::COUNT
            + self.outcome.index()
    }

    /// The key at `index` (the inverse of [`RequestKey::index`]).
    pub(super) fn at(index: usize) -> RequestKey {
        let outcome = Outcome::at(index % Outcome::COUNT);
        let rest = index / Outcome::COUNT;
        RequestKey {
            transport: Transport::ALL[rest / Operation::COUNT],
            operation: OPERATIONS[rest % Operation::COUNT],
            outcome,
        }
    }
}

/// Every operation, in index order.
const OPERATIONS: [Operation; Operation::COUNT] = [
    Operation::DefineLocation,
    Operation::DefineGroup,
    Operation::DefineSku,
    Operation::SetOnHand,
    Operation::Adjust,
    Operation::SetSafetyStock,
    Operation::MarkUnavailable,
    Operation::RestoreUnavailable,
    Operation::Sell,
    Operation::Reserve,
    Operation::Extend,
    Operation::Release,
    Operation::PlaceOrder,
    Operation::Fulfil,
    Operation::Cancel,
    Operation::Reallocate,
    Operation::ReadyForPickup,
    Operation::PickedUp,
    Operation::Return,
    Operation::ShipTransfer,
    Operation::ReceiveTransfer,
    Operation::RevokeCredential,
    Operation::CreateToken,
    Operation::Availability,
    Operation::Nearby,
    Operation::Reservation,
    Operation::Order,
    Operation::Rma,
    Operation::Transfer,
    Operation::Changes,
    Operation::LedgerStatus,
    Operation::Location,
    Operation::Revoked,
    Operation::SkuSearch,
    Operation::Pickups,
    Operation::Status,
    Operation::Digest,
    Operation::Subscribe,
    Operation::Init,
    Operation::AddNode,
    Operation::RemoveNode,
    Operation::DefineKit,
    Operation::Exchange,
    Operation::SetPurchaseLimit,
    Operation::SetRetention,
    Operation::Retention,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_its_own_index_and_back() {
        let mut seen = vec![false; REQUEST_KEYS];
        for transport in Transport::ALL {
            for operation in OPERATIONS {
                for index in 0..Outcome::COUNT {
                    let key = RequestKey {
                        transport,
                        operation,
                        outcome: Outcome::at(index),
                    };
                    let at = key.index();
                    assert!(!seen[at], "{key:?} shares index {at}");
                    seen[at] = true;
                    assert_eq!(RequestKey::at(at), key);
                }
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn the_ledger_codes_index_in_declaration_order() {
        for (i, code) in Code::ALL.into_iter().enumerate() {
            assert_eq!(Outcome::Ledger(code).index(), i, "{code:?}");
        }
    }

    #[test]
    fn label_values_are_distinct_and_match_the_names_used_elsewhere() {
        let names: std::collections::BTreeSet<&str> =
            OPERATIONS.iter().map(|o| o.as_str()).collect();
        assert_eq!(names.len(), Operation::COUNT);
        let outcomes: std::collections::BTreeSet<&str> = (0..Outcome::COUNT)
            .map(|i| Outcome::at(i).as_str())
            .collect();
        assert_eq!(outcomes.len(), Outcome::COUNT);
        // The node errors' labels are their stable codes on the wire.
        let text = || "why".to_owned();
        let errors = [
            ServerError::NotLeader { leader: None },
            ServerError::Busy,
            ServerError::NotReady,
            ServerError::Timeout,
            ServerError::Unavailable { message: text() },
            ServerError::InvalidOp { message: text() },
            ServerError::Internal { message: text() },
            ServerError::Removed { members: vec![] },
            ServerError::Forbidden { message: text() },
        ];
        for error in &errors {
            assert_eq!(Outcome::of_error(error).as_str(), error.code());
        }
        let release = Command::Release {
            reservation: engine::ReservationId::from("r"),
        };
        assert_eq!(Operation::of_command(&release).as_str(), release.name());
    }
}
