//! Who is asking over HTTP: `Authorization: Bearer <token>` (SPEC section 7).
//!
//! A token names its grant by id; the grant (principal and the SHA-256 of the secret) is in
//! the replicated ledger (`Command::CreateToken`), so every node knows every token once it has
//! applied its creation. It is read from the node's copy of the ledger's credential tables
//! (`auth::CredentialCopy`), without taking the ledger's lock. The presented secret's hash is compared with the stored one in
//! constant time (`pki::Token::verify`). What the principal may do, whether its credential was
//! revoked or has expired, is then `auth::decide`'s, as for a certificate: the same check, the
//! same `forbidden` answers and counters, the same author on the change feed.

use axum::http::{header, HeaderMap};

use pki::{Principal, Token};

use super::problem::{HttpCode, Problem};
use crate::node::NodeCtx;

fn unauthorized(detail: &str) -> Problem {
    Problem::http(HttpCode::Unauthorized, detail)
}

/// The principal of a request's bearer token, or the 401 problem. A token the ledger does not
/// hold (never issued, or past its expiry and forgotten) is unknown; a revoked one still
/// resolves here and is refused by `auth::decide` (403).
pub fn principal(ctx: &NodeCtx, headers: &HeaderMap) -> Result<Principal, Problem> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        unauthorized("send Authorization: Bearer <token> (stockctl token create)")
    })?;
    let text = value
        .to_str()
        .map_err(|_| unauthorized("the Authorization header is not text"))?;
    let (scheme, credentials) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| unauthorized("expected Authorization: Bearer <token>"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized("only Bearer tokens are accepted over HTTP"));
    }
    let token = Token::parse(credentials).ok_or_else(|| unauthorized("not a stockd token"))?;
    // The node's copy of the ledger's tokens: no ledger lock per request.
    let credentials = ctx.shared.credentials.load();
    let unknown = || unauthorized(&format!("unknown or expired token {}", token.id));
    let grant = credentials.token(&token.id).ok_or_else(unknown)?;
    if !token.verify(&grant.secret_hash) {
        return Err(unknown());
    }
    pki::token_principal(
        &token.id,
        &grant.name,
        &grant.role,
        &grant.channels,
        &grant.locations,
        grant.expires_at_ms,
    )
    .ok_or_else(|| unauthorized(&format!("token {} has an unknown role", token.id)))
}

/// How often the admin token's bootstrap checks whether its grant is in the ledger, ms.
pub const ADMIN_TOKEN_CHECK_MS: u64 = 250;

/// Makes sure the cluster holds the grant of the administrator token written next to the CA
/// (the embedded default and `dev`): while the ledger lacks it, the node proposes it whenever
/// it leads. The request id is derived from the token id, so nodes racing to propose it, or a
/// restart that proposes it again, are one write for the ledger's dedup.
pub async fn bootstrap_admin_token(
    ctx: std::sync::Arc<NodeCtx>,
    token: Token,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let Some(request_id) = u128::from_str_radix(&token.id, 16)
        .ok()
        .filter(|id| *id != 0)
    else {
        return;
    };
    let author = std::sync::Arc::new(engine::Author {
        name: pki::token::ADMIN_TOKEN_NAME.to_owned(),
        role: pki::ClientRole::Admin.as_str().to_owned(),
    });
    let days = u64::from(pki::CLIENT_DAYS_MAX);
    loop {
        let held = ctx.shared.credentials.load().token(&token.id).is_some();
        if held || *shutdown.borrow() {
            return;
        }
        if ctx.is_ready() && ctx.consensus.is_leader() {
            let grant = engine::TokenGrant {
                name: author.name.clone(),
                role: author.role.clone(),
                channels: Vec::new(),
                locations: Vec::new(),
                expires_at_ms: ctx.clock.now_ms() + days * 86_400_000,
                secret_hash: token.secret_hash(),
            };
            let command = engine::Command::CreateToken(engine::TokenDef {
                id: token.id.clone(),
                grant,
            });
            let request = engine::Request {
                request_id: engine::RequestId(request_id),
                command,
            };
            let bytes = crate::api::FORWARDED_BYTES_PER_OP;
            let _ = ctx.proposer.submit(request, author.clone(), bytes).await;
        }
        let wait = std::time::Duration::from_millis(ADMIN_TOKEN_CHECK_MS);
        let _ = tokio::time::timeout(wait, shutdown.changed()).await;
    }
}
