//! `stockd-load limited-sale`: a sneaker drop with a per-customer purchase limit (issue 13).
//!
//! N customers go for K units of one SKU whose strict limit lets each hold at most L units,
//! all at the same instant, over several client connections. A third of the customers send
//! one hold of one unit; a third are retriers, who send their hold and then the SAME request
//! again (a checkout that timed out and retried: the ledger answers the original outcome); a
//! third send several one-unit holds at once (more than their limit). The run checks that
//! exactly `min(K, sum over customers of min(L, units asked))` units were granted, that no
//! customer holds more than L, that a retry got the same answer as its original, and that the
//! stock reads back with exactly the granted units reserved; it reports the latency of every
//! hold from the common start.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use client::{new_request_id, Client, ClientError};
use engine::{
    code_of, Answer, ChannelId, Command, CustomerId, Line, LocationDef, LocationId, LocationKind,
    Query, Reason, Request, ReservationId, SkuId, Target,
};
use protocol::Consistency;

use crate::cluster::{Cluster, ClusterChoice};
use crate::stockd::RuntimeKind;

/// What to run.
#[derive(Debug, Clone)]
pub struct LimitedSaleRequest {
    /// Where.
    pub cluster: ClusterChoice,
    /// Customers.
    pub customers: u64,
    /// Units on sale.
    pub units: i64,
    /// Units per customer (the limit).
    pub limit: i64,
    /// Holds a greedy customer sends at once.
    pub greedy_holds: u64,
    /// Client connections the customers are spread over.
    pub connections: usize,
    /// Print the report as JSON too.
    pub json: bool,
}

/// One customer's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// One hold of one unit.
    Single,
    /// One hold, then the same request again.
    Retrier,
    /// Several one-unit holds at once.
    Greedy,
}

fn behaviour(i: u64) -> Behaviour {
    match i % 3 {
        0 => Behaviour::Single,
        1 => Behaviour::Retrier,
        _ => Behaviour::Greedy,
    }
}

/// What the sale showed, and whether every check held.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LimitedSaleReport {
    /// Customers, units on sale, limit.
    pub customers: u64,
    /// Units on sale.
    pub units: i64,
    /// Units per customer.
    pub limit: i64,
    /// Units granted (distinct holds granted).
    pub granted: i64,
    /// Units that should be granted: min(K, sum of min(L, asked)).
    pub expected: i64,
    /// Answers by code (transport errors as `error`).
    pub outcomes: BTreeMap<String, u64>,
    /// The most units one customer was granted.
    pub most_for_one_customer: i64,
    /// Retries whose answer differed from their original.
    pub retries_answered_differently: u64,
    /// Reserved units read back after the sale.
    pub reserved_after: i64,
    /// Latency from the common start, µs: p50, p99, max.
    pub latency_us: (u64, u64, u64),
    /// Whether every check held.
    pub exact: bool,
}

/// One hold's result: the customer, whether it was granted, its code, its latency.
struct Answered {
    customer: u64,
    request: u128,
    code: String,
    latency: Duration,
}

/// The `limited-sale` command.
pub fn limited_sale(req: LimitedSaleRequest) -> ExitCode {
    let (cluster, runtime) =
        match Cluster::open_with_runtime(req.cluster.clone(), RuntimeKind::Multi) {
            Ok(opened) => opened,
            Err(code) => return code,
        };
    let result = runtime.block_on(run(cluster.config.clone(), &req));
    drop(runtime);
    cluster.stop();
    match result {
        Ok(report) => {
            print(&report, req.json);
            if report.exact {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("stockd-load: limited-sale: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print(r: &LimitedSaleReport, json: bool) {
    println!(
        "limited sale: {} customers for {} units, at most {} each: granted {} (expected {}), \
         most for one customer {}, retries answered differently {}, reserved after {}, \
         latency p50 {} us p99 {} us max {} us, answers {:?}: {}",
        r.customers,
        r.units,
        r.limit,
        r.granted,
        r.expected,
        r.most_for_one_customer,
        r.retries_answered_differently,
        r.reserved_after,
        r.latency_us.0,
        r.latency_us.1,
        r.latency_us.2,
        r.outcomes,
        if r.exact { "exact" } else { "CHECK FAILED" }
    );
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    }
}

const SKU: &str = "limited-drop";
const LOCATION: &str = "dc-1";

/// Defines the location, the stock and the strict limit.
async fn setup(client: &Client, req: &LimitedSaleRequest) -> Result<(), ClientError> {
    let commands = [
        Command::DefineLocation(LocationDef {
            location: LocationId::from(LOCATION),
            kind: LocationKind::Warehouse,
            pickup: false,
            coordinates: None,
            channels: None,
        }),
        Command::SetOnHand {
            sku: SkuId::from(SKU),
            location: LocationId::from(LOCATION),
            qty: req.units,
            reason: Reason::from("drop"),
            expected: None,
        },
        Command::SetPurchaseLimit {
            sku: SkuId::from(SKU),
            qty_max: req.limit,
            window_ms: 3_600_000,
            strict: true,
        },
    ];
    for command in commands {
        let name = command.name();
        if let Err(r) = client.write(command).await?.outcome {
            return Err(ClientError::Unexpected(format!("{name}: {r}")));
        }
    }
    Ok(())
}

/// A customer's one-unit hold, under its own request id.
fn hold(customer: u64, n: u64) -> Request {
    Request {
        request_id: new_request_id(),
        command: Command::AsCustomer {
            customer: CustomerId::from(format!("customer-{customer}")),
            command: Box::new(Command::Reserve {
                reservation: ReservationId::from(format!("c{customer}-h{n}")),
                channel: ChannelId::from("web"),
                lines: vec![Line {
                    sku: SkuId::from(SKU),
                    target: Target::Location(LocationId::from(LOCATION)),
                    qty: 1,
                }],
                ttl_ms: 600_000,
            }),
        },
    }
}

/// The requests a customer sends at the start (a retrier's retry is sent after its answer).
fn requests_of(customer: u64, greedy_holds: u64) -> Vec<Request> {
    let holds = match behaviour(customer) {
        Behaviour::Greedy => greedy_holds.max(2),
        _ => 1,
    };
    (0..holds).map(|n| hold(customer, n)).collect()
}

async fn run(
    config: client::ClientConfig,
    req: &LimitedSaleRequest,
) -> Result<LimitedSaleReport, ClientError> {
    let mut clients = Vec::new();
    for _ in 0..req.connections.max(1) {
        clients.push(Client::connect(config.clone()).await?);
    }
    setup(&clients[0], req).await?;
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = tokio::task::JoinSet::new();
    let mut asked: BTreeMap<u64, i64> = BTreeMap::new();
    for customer in 0..req.customers {
        let requests = requests_of(customer, req.greedy_holds);
        asked.insert(customer, requests.len() as i64);
        for request in requests {
            let client = clients[(customer as usize) % clients.len()].clone();
            let retry = behaviour(customer) == Behaviour::Retrier;
            tasks.spawn(send(client, customer, request, retry, start));
        }
    }
    let mut answered: Vec<Answered> = Vec::new();
    let mut retries_differ = 0u64;
    while let Some(joined) = tasks.join_next().await {
        let Ok((first, retried)) = joined else {
            continue;
        };
        if retried.as_ref().is_some_and(|r| r.code != first.code) {
            retries_differ += 1;
        }
        answered.push(first);
    }
    let reserved_after = reserved(&clients[0]).await?;
    for c in &clients {
        c.close();
    }
    Ok(report(
        req,
        &asked,
        &answered,
        retries_differ,
        reserved_after,
    ))
}

/// Sends one hold at `start` (and, for a retrier, the same request again once answered).
async fn send(
    client: Client,
    customer: u64,
    request: Request,
    retry: bool,
    start: Instant,
) -> (Answered, Option<Answered>) {
    tokio::time::sleep_until(start.into()).await;
    let once = |request: Request| {
        let client = client.clone();
        async move {
            let id = request.request_id.0;
            let code = match client.write_with_id(request).await {
                Ok(w) => code_of(&w.outcome).as_str().to_owned(),
                Err(_) => "error".to_owned(),
            };
            Answered {
                customer,
                request: id,
                code,
                latency: start.elapsed(),
            }
        }
    };
    let first = once(request.clone()).await;
    let retried = if retry {
        Some(once(request).await)
    } else {
        None
    };
    (first, retried)
}

/// Reserved units of the SKU, read linearizably.
async fn reserved(client: &Client) -> Result<i64, ClientError> {
    let query = Query::Availability {
        skus: vec![SkuId::from(SKU)],
        target: engine::Target::Location(LocationId::from(LOCATION)),
        channel: ChannelId::from("web"),
    };
    let read = client.read(query, Consistency::Linearizable).await?;
    match read.answer {
        Ok(Answer::Availability(rows)) => Ok(rows
            .first()
            .and_then(|a| a.rows.first())
            .map_or(0, |r| r.balance.reserved)),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

fn report(
    req: &LimitedSaleRequest,
    asked: &BTreeMap<u64, i64>,
    answered: &[Answered],
    retries_differ: u64,
    reserved_after: i64,
) -> LimitedSaleReport {
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_customer: BTreeMap<u64, i64> = BTreeMap::new();
    let mut granted_ids = std::collections::BTreeSet::new();
    for a in answered {
        *outcomes.entry(a.code.clone()).or_default() += 1;
        if a.code == "ok" && granted_ids.insert(a.request) {
            *per_customer.entry(a.customer).or_default() += 1;
        }
    }
    let granted = granted_ids.len() as i64;
    let wanted: i64 = asked.values().map(|&n| n.min(req.limit)).sum();
    let expected = req.units.min(wanted);
    let most = per_customer.values().copied().max().unwrap_or(0);
    let mut latencies: Vec<u64> = answered
        .iter()
        .map(|a| a.latency.as_micros() as u64)
        .collect();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let exact = granted == expected
        && most <= req.limit
        && retries_differ == 0
        && reserved_after == granted
        && !outcomes.contains_key("error");
    LimitedSaleReport {
        customers: req.customers,
        units: req.units,
        limit: req.limit,
        granted,
        expected,
        outcomes,
        most_for_one_customer: most,
        retries_answered_differently: retries_differ,
        reserved_after,
        latency_us: (at(0.5), at(0.99), latencies.last().copied().unwrap_or(0)),
        exact,
    }
}
