//! Reads and runs a case one line at a time: `advance`, `expect`, `concurrent` and writes
//! (with an optional `request KEY:` and `=> CODE`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use engine::{code_of, Code, Outcome, Request, RequestId};

use super::prepare::{Unsent, Words};
use super::{CaseError, CaseTarget, RunOptions, TargetError};
use crate::grammar;

/// Mixed into the request id of every line without `request KEY:`, so that two identical lines
/// are two requests (FORMAT.md: deduplication is by request id only).
static FRESH: AtomicU64 = AtomicU64::new(0);

/// Most copies of one `concurrent` line.
const CONCURRENT_MAX: usize = 10_000;

/// Per-case state of the runner: what earlier lines declared.
pub(super) struct Runner<'a> {
    pub(super) options: &'a RunOptions,
    /// Decimal scale per SKU (as written in the case).
    pub(super) scales: BTreeMap<String, u8>,
    /// Group ids (as written in the case), to tell them from locations.
    pub(super) groups: BTreeSet<String>,
    /// Transfer id -> SKU (as written in the case), for the scale of `receive_transfer`.
    pub(super) transfers: BTreeMap<String, String>,
}

/// A write line with its request key: `[request KEY:] COMMAND WORDS...`.
struct Keyed<'w> {
    /// The `KEY` of `request KEY:`, if any.
    key: Option<&'w str>,
    /// The command and its words.
    words: Vec<&'w str>,
}

impl<'w> Keyed<'w> {
    /// Splits a leading `request KEY:` off a command.
    fn split(words: &[&'w str]) -> Result<Keyed<'w>, CaseError> {
        if words.first() != Some(&"request") {
            return Ok(Keyed {
                key: None,
                words: words.to_vec(),
            });
        }
        let missing = |what| CaseError::Missing {
            command: "request".into(),
            what,
        };
        let key = words
            .get(1)
            .and_then(|k| k.strip_suffix(':'))
            .ok_or_else(|| missing("`KEY:`"))?;
        if words.len() < 3 {
            return Err(missing("a command"));
        }
        Ok(Keyed {
            key: Some(key),
            words: words[2..].to_vec(),
        })
    }
}

impl<'a> Runner<'a> {
    pub(super) fn new(options: &'a RunOptions) -> Runner<'a> {
        Runner {
            options,
            scales: BTreeMap::new(),
            groups: BTreeSet::new(),
            transfers: BTreeMap::new(),
        }
    }

    /// Runs one line of the case (comments and blank lines do nothing).
    pub(super) fn run_line(
        &mut self,
        target: &mut dyn CaseTarget,
        raw: &str,
    ) -> Result<(), CaseError> {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            return Ok(());
        }
        let (body, expected) = split_expected(line);
        let words: Vec<&str> = body.split_whitespace().collect();
        match words.first().copied().unwrap_or("") {
            "advance" => {
                let ms = grammar::duration_ms(words.get(1).copied().unwrap_or(""))?;
                Ok(target.advance(ms)?)
            }
            "expect" => self.check(target, &words[1..]),
            "concurrent" => self.concurrent(target, &words, expected),
            _ => self.write(target, raw, &words, expected),
        }
    }

    /// A write line: one request, its outcome checked against `=> CODE` (default `ok`).
    fn write(
        &mut self,
        target: &mut dyn CaseTarget,
        raw: &str,
        words: &[&str],
        expected: Option<&str>,
    ) -> Result<(), CaseError> {
        let expected = expected.map_or(Ok(Code::Ok), parse_code)?;
        let keyed = Keyed::split(words)?;
        let request_id = self.request_id(keyed.key, raw, 0);
        let outcome = match self.prepare(&Words::split(&keyed.words)) {
            Ok(command) => {
                let sent = target.submit(vec![Request {
                    request_id,
                    command,
                }])?;
                one_outcome(sent)?
            }
            Err(Unsent::Local(outcome)) => outcome,
            Err(Unsent::Error(e)) => return Err(e),
        };
        check_outcome(expected, &outcome)
    }

    /// `concurrent N COMMAND => CODE:COUNT ...`: N copies at once (`{i}` is 1..=N); the counts
    /// of outcome codes must match exactly.
    fn concurrent(
        &mut self,
        target: &mut dyn CaseTarget,
        words: &[&str],
        expected: Option<&str>,
    ) -> Result<(), CaseError> {
        let missing = |what| CaseError::Missing {
            command: "concurrent".into(),
            what,
        };
        let n: usize = words
            .get(1)
            .and_then(|w| w.parse().ok())
            .filter(|n| (1..=CONCURRENT_MAX).contains(n))
            .ok_or_else(|| missing("a count 1..=10000"))?;
        let want = parse_counts(expected.ok_or_else(|| missing("`=> code:count ...`"))?)?;
        let template = words[2..].join(" ");
        let mut requests = Vec::with_capacity(n);
        let mut outcomes: Vec<Outcome> = Vec::new();
        for i in 1..=n {
            let text = template.replace("{i}", &i.to_string());
            let copy: Vec<&str> = text.split_whitespace().collect();
            let keyed = Keyed::split(&copy)?;
            let request_id = self.request_id(keyed.key, &template, i);
            match self.prepare(&Words::split(&keyed.words)) {
                Ok(command) => requests.push(Request {
                    request_id,
                    command,
                }),
                Err(Unsent::Local(outcome)) => outcomes.push(outcome),
                Err(Unsent::Error(e)) => return Err(e),
            }
        }
        outcomes.extend(target.submit(requests)?);
        let mut got: BTreeMap<Code, usize> = BTreeMap::new();
        for outcome in &outcomes {
            *got.entry(code_of(outcome)).or_default() += 1;
        }
        compare(&show_counts(&want), &show_counts(&got))
    }

    /// The request id of a line: derived from the case's `request KEY:` if any, else fresh
    /// for this line and copy.
    fn request_id(&self, key: Option<&str>, line: &str, copy: usize) -> RequestId {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.options.salt.to_le_bytes());
        match key {
            Some(key) => hasher.update(b"key\0").update(key.as_bytes()),
            None => hasher
                .update(b"line\0")
                .update(line.as_bytes())
                .update(&(copy as u64).to_le_bytes())
                .update(&FRESH.fetch_add(1, Ordering::Relaxed).to_le_bytes()),
        };
        let bytes: [u8; 16] = hasher.finalize().as_bytes()[..16]
            .try_into()
            .expect("16 bytes");
        // Zero is not a request id.
        RequestId(u128::from_le_bytes(bytes).max(1))
    }

    /// An id as the target knows it: prefixed with the run's namespace.
    pub(super) fn ns(&self, id: &str) -> String {
        format!("{}{id}", self.options.namespace)
    }

    /// The scale of a SKU as written in the case (0 unless a `sku` line declared one).
    pub(super) fn scale(&self, sku: &str) -> u8 {
        self.scales.get(sku).copied().unwrap_or(0)
    }
}

/// The one outcome of a one-request submit.
fn one_outcome(mut outcomes: Vec<Outcome>) -> Result<Outcome, TargetError> {
    match (outcomes.pop(), outcomes.len()) {
        (Some(outcome), 0) => Ok(outcome),
        (last, rest) => Err(TargetError::Outcomes {
            sent: 1,
            got: rest + usize::from(last.is_some()),
        }),
    }
}

/// `Ok` if the check's expected and actual texts are equal.
pub(super) fn compare(want: &str, got: &str) -> Result<(), CaseError> {
    if want == got {
        return Ok(());
    }
    Err(CaseError::Mismatch {
        want: want.to_owned(),
        got: got.to_owned(),
    })
}

/// `Ok` if the outcome has the expected code; the mismatch shows the whole rejection.
fn check_outcome(expected: Code, outcome: &Outcome) -> Result<(), CaseError> {
    if code_of(outcome) == expected {
        return Ok(());
    }
    let got = match outcome {
        Ok(_) => "ok".to_owned(),
        Err(rejection) => rejection.to_string(),
    };
    Err(CaseError::Mismatch {
        want: expected.to_string(),
        got,
    })
}

/// `ok:2 insufficient_stock:1` (codes in their order).
fn show_counts(counts: &BTreeMap<Code, usize>) -> String {
    counts
        .iter()
        .map(|(c, n)| format!("{c}:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads `CODE:COUNT ...`; a code named twice adds up.
fn parse_counts(text: &str) -> Result<BTreeMap<Code, usize>, CaseError> {
    let mut want: BTreeMap<Code, usize> = BTreeMap::new();
    for item in text.split_whitespace() {
        let bad = || CaseError::Unknown {
            what: "outcome count",
            text: item.to_owned(),
        };
        let (code, count) = item.split_once(':').ok_or_else(bad)?;
        let count: usize = count.parse().map_err(|_| bad())?;
        *want.entry(parse_code(code)?).or_default() += count;
    }
    Ok(want)
}

/// Splits `command => expected` (the last `=>`).
fn split_expected(line: &str) -> (&str, Option<&str>) {
    match line.rsplit_once("=>") {
        Some((body, expected)) => (body.trim(), Some(expected.trim())),
        None => (line, None),
    }
}

/// An outcome code (`ok`, `insufficient_stock`, ...).
fn parse_code(text: &str) -> Result<Code, CaseError> {
    Code::parse(text).ok_or_else(|| CaseError::Unknown {
        what: "outcome code",
        text: text.to_owned(),
    })
}
