//! Running a parsed command against the cluster and printing the answer (text or JSON).

use client::{new_request_id, Client, ClientError, ReadResult, WriteResult};
use engine::query::{ChangeEvent, TransferView};
use engine::{
    Answer, ChannelId, Coordinates, OrderId, Query, RequestId, ReservationId, RmaId, SkuId,
    TransferId,
};
use protocol::{Consistency, MemberState, NodeAddr};
use serde_json::{json, Value};

use super::build::{build, BuildError};
use super::command::{CredentialsCmd, TokenCmd};
use super::facts::{facts, needs, Needs};
use super::show::{self, ReplyContext, Scales};
use super::{Cmd, Exit, Fail};
use crate::grammar::{self, GrammarError, Qty};

/// Where output goes: text or JSON on stdout.
pub(super) struct Out {
    /// JSON (wire values) instead of text.
    pub(super) json: bool,
}

impl Out {
    pub(super) fn print(&self, text: impl FnOnce() -> String, json: impl FnOnce() -> Value) {
        if self.json {
            println!("{}", json());
        } else {
            println!("{}", text());
        }
    }
}

/// The query of a command that looks one object up by its id (reservation, order, RMA,
/// transfer) and its consistency; `None` for any other command.
fn lookup(cmd: &Cmd) -> Option<(Query, Consistency)> {
    let (query, consistency) = match cmd {
        Cmd::Reservation { id, consistency } => (
            Query::Reservation(ReservationId::from(id.as_str())),
            consistency,
        ),
        Cmd::Order { id, consistency } => (Query::Order(OrderId::from(id.as_str())), consistency),
        Cmd::Rma { id, consistency } => (Query::Rma(RmaId::from(id.as_str())), consistency),
        Cmd::Transfer { id, consistency } => {
            (Query::Transfer(TransferId::from(id.as_str())), consistency)
        }
        _ => return None,
    };
    Some((query, *consistency))
}

/// Runs a command on the cluster (`case` runs without one: see [`super::run`]). `first_node`
/// receives `init`; `request_id` is a write's, if the user chose it.
pub(super) async fn execute(
    client: &Client,
    out: &Out,
    first_node: &str,
    request_id: Option<RequestId>,
    cmd: Cmd,
) -> Result<Exit, Fail> {
    if let Some((by_id, consistency)) = lookup(&cmd) {
        return query(client, out, by_id, consistency).await;
    }
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
            let center = grammar::coordinates(lat, lon);
            let wanted = Wanted { sku, qty, channel };
            nearby(client, out, wanted, center, radius_km, consistency).await
        }
        Cmd::Changes {
            since,
            max,
            follow,
            at,
            consistency,
        } => changes(client, out, since, max, follow, &at, consistency).await,
        Cmd::Status => status(client, out).await,
        Cmd::Members => members(client, out).await,
        Cmd::Digest { node } => digest(client, out, node).await,
        Cmd::Init { members } => init(client, out, first_node, members).await,
        Cmd::AddNode { id, addr } => add_node(client, out, NodeAddr { id, addr }).await,
        Cmd::RemoveNode { id } => remove_node(client, out, id).await,
        Cmd::Case { .. } => Err(Fail::Usage("case runs without a runtime")),
        Cmd::Credentials {
            action: CredentialsCmd::List,
        } => revoked(client, out).await,
        Cmd::Whoami => Err(Fail::Usage("whoami runs without a runtime")),
        Cmd::Retention { action } => super::retention::run(client, out, request_id, action).await,
        Cmd::Token { action } => {
            let request_id = request_id.unwrap_or_else(new_request_id);
            token_create(client, out, request_id, TokenAsk::from(action)).await
        }
        write => {
            let request_id = request_id.unwrap_or_else(new_request_id);
            write_command(client, out, request_id, write).await
        }
    }
}

/// What `nearby` looks for: `qty` display units of `sku` sellable on `channel`.
struct Wanted {
    sku: String,
    qty: Qty,
    channel: String,
}

/// `nearby`: locations with enough stock within `radius_km` of `center`, quantities shown at
/// the SKU's scale.
async fn nearby(
    client: &Client,
    out: &Out,
    wanted: Wanted,
    center: Coordinates,
    radius_km: u32,
    consistency: Consistency,
) -> Result<Exit, Fail> {
    let facts = facts(client, &Needs::skus(vec![wanted.sku.clone()], None)).await?;
    let scale = facts.scale(&wanted.sku);
    let qty = match wanted.qty.to_base(scale) {
        Ok(q) => q,
        Err(why) => return Ok(local_invalid(out, &why)),
    };
    let query = Query::Nearby {
        sku: SkuId::from(wanted.sku),
        center,
        radius_km,
        qty,
        channel: ChannelId::from(wanted.channel),
    };
    let result = client.read(query, consistency).await?;
    if let (false, Ok(Answer::Nearby(rows))) = (out.json, &result.answer) {
        println!("{}", show::nearby(rows, scale));
        return Ok(Exit::Ok);
    }
    Ok(print_read(client, out, result).await)
}

/// `members`: the membership as the leader sees it.
async fn members(client: &Client, out: &Out) -> Result<Exit, Fail> {
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

/// `credentials list`: the deny list as the leader holds it.
async fn revoked(client: &Client, out: &Out) -> Result<Exit, Fail> {
    query(client, out, Query::Revoked, Consistency::Linearizable).await
}

/// What `token create` asks for.
struct TokenAsk {
    name: String,
    role: String,
    channels: Vec<String>,
    locations: Vec<String>,
    days: u32,
}

impl From<TokenCmd> for TokenAsk {
    fn from(action: TokenCmd) -> TokenAsk {
        let TokenCmd::Create {
            name,
            role,
            channel,
            location,
            days,
        } = action;
        TokenAsk {
            name,
            role,
            channels: channel,
            locations: location,
            days,
        }
    }
}

/// `token create`: a new token whose grant (principal, SHA-256 of the secret) goes to the
/// cluster; the token itself is printed once, here, and nowhere else.
async fn token_create(
    client: &Client,
    out: &Out,
    request_id: RequestId,
    ask: TokenAsk,
) -> Result<Exit, Fail> {
    if pki::ClientRole::parse(&ask.role).is_none() {
        return Err(Fail::Usage("--role: reader, checkout, store, ops or admin"));
    }
    if ask.days == 0 || ask.days > pki::CLIENT_DAYS_MAX {
        return Err(Fail::Usage("--days: 1..=3650"));
    }
    let token = pki::Token::generate().map_err(|_| Fail::Usage("no random source"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let expires_at_ms = now + u64::from(ask.days) * 86_400_000;
    let grant = engine::TokenGrant {
        name: ask.name,
        role: ask.role,
        channels: ask.channels,
        locations: ask.locations,
        expires_at_ms,
        secret_hash: token.secret_hash(),
    };
    let command = engine::Command::CreateToken(engine::TokenDef {
        id: token.id.clone(),
        grant,
    });
    let request = engine::Request {
        request_id,
        command,
    };
    let result = client.write_with_id(request).await?;
    if result.outcome.is_err() {
        return Ok(print_outcome(out, &result, &ReplyContext::default()));
    }
    out.print(
        || {
            format!(
                "token {} (expires in {} days; shown once, keep it secret):\n{}",
                token.id,
                ask.days,
                token.text()
            )
        },
        || json!({"code": "ok", "id": token.id, "token": token.text(), "expires_at_ms": expires_at_ms}),
    );
    Ok(Exit::Ok)
}

/// `init`: a new cluster of `members`, sent to `first_node`.
async fn init(
    client: &Client,
    out: &Out,
    first_node: &str,
    members: Vec<NodeAddr>,
) -> Result<Exit, Fail> {
    client.init(first_node, members).await?;
    out.print(|| "ok: cluster initialised".into(), || json!({"ok": true}));
    Ok(Exit::Ok)
}

/// `add-node`: where the node stands afterwards, and the exit status that says so.
async fn add_node(client: &Client, out: &Out, node: NodeAddr) -> Result<Exit, Fail> {
    let state = client.add_node(node.clone()).await?;
    out.print(
        || show::member_state(node.id, &node.addr, &state),
        || member_state_json(node.id, &state),
    );
    Ok(added_exit(&state))
}

/// `remove-node`.
async fn remove_node(client: &Client, out: &Out, id: u64) -> Result<Exit, Fail> {
    client.remove_node(id).await?;
    out.print(|| format!("ok: node {id} removed"), || json!({"ok": true}));
    Ok(Exit::Ok)
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

async fn write_command(
    client: &Client,
    out: &Out,
    request_id: RequestId,
    cmd: Cmd,
) -> Result<Exit, Fail> {
    let facts = facts(client, &needs(&cmd)).await?;
    let built = match build(&cmd, &facts) {
        Ok(built) => built,
        Err(BuildError::Usage(why)) => return Err(Fail::Usage(why)),
        Err(BuildError::Invalid(why)) => return Ok(local_invalid(out, &why)),
    };
    let request = engine::Request {
        request_id,
        command: built.command,
    };
    let result = client.write_with_id(request).await?;
    Ok(print_outcome(out, &result, &built.context))
}

/// A write's outcome, with its request id and log index; the exit status it means.
pub(super) fn print_outcome(out: &Out, result: &WriteResult, context: &ReplyContext) -> Exit {
    let WriteResult {
        request_id,
        outcome,
        log_index,
    } = result;
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

/// A quantity the ledger would reject as `invalid`, decided before sending (exit status 1).
fn local_invalid(out: &Out, why: &GrammarError) -> Exit {
    out.print(
        || format!("rejected: invalid: {why} (not sent)"),
        || json!({"code": "invalid", "message": why.to_string(), "sent": false}),
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
        skus: skus.into_iter().map(SkuId::from).collect(),
        target: facts.target(at),
        channel: ChannelId::from(channel),
    };
    let result = client.read(query, consistency).await?;
    Ok(print_read(client, out, result).await)
}

pub(super) async fn query(
    client: &Client,
    out: &Out,
    query: Query,
    consistency: Consistency,
) -> Result<Exit, Fail> {
    let result = client.read(query, consistency).await?;
    Ok(print_read(client, out, result).await)
}

/// What showing a view in display units needs: the scales of its lines' SKUs, read at the
/// location of its first line.
fn view_needs(answer: &Answer) -> Needs {
    let (skus, hint) = match answer {
        Answer::Reservation(v) => (
            v.lines.iter().map(|l| l.sku.0.to_string()).collect(),
            v.lines.first().map(|l| l.location.0.to_string()),
        ),
        Answer::Order(v) => (
            v.lines.iter().map(|l| l.sku.0.to_string()).collect(),
            v.lines.first().map(|l| l.location.0.to_string()),
        ),
        Answer::Rma(v) => (
            v.lines.iter().map(|l| l.sku.0.to_string()).collect(),
            v.lines.first().map(|l| l.received_at.0.to_string()),
        ),
        Answer::Transfer(TransferView { sku, from, .. }) => {
            (vec![sku.0.to_string()], Some(from.0.to_string()))
        }
        _ => (vec![], None),
    };
    Needs::skus(skus, hint)
}

/// A read's answer (or rejection), in display units; the exit status it means.
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
    let needs = view_needs(&answer);
    let scales = if needs.skus.is_empty() {
        Scales::new()
    } else {
        // Without the scales the view still shows, in base units.
        facts(client, &needs)
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
        Answer::Revoked(rows) => show::revoked(rows),
        Answer::Retention(config) => show::retention(config),
        other => format!("{other:?}"),
    };
    println!("{text}");
    Exit::Ok
}

/// A change event as JSON, with its request id in hex like everywhere in stockctl.
pub(super) fn event_json(e: &ChangeEvent) -> Value {
    // serde_json has no 128-bit integers (a real request id does not fit its u64): serialize
    // without the id, then add it as hex.
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
    at: &[String],
    consistency: Consistency,
) -> Result<Exit, Fail> {
    let locations: Vec<engine::LocationId> = at
        .iter()
        .map(|l| engine::LocationId::from(l.as_str()))
        .collect();
    if !follow {
        let page = if locations.is_empty() {
            Query::Changes { since, max }
        } else {
            Query::ChangesAt {
                since,
                max,
                locations,
            }
        };
        return query(client, out, page, consistency).await;
    }
    let mut subscription = client.subscribe_at(since, locations).await?;
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
