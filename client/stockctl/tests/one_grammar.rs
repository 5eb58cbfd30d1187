//! stockctl's command line and case files speak one grammar (ARCHITECTURE.md): the same words
//! make the same write, and no module but `grammar.rs` splits them.

use std::path::Path;

use clap::Parser;
use engine::{Answer, Outcome, Query, Rejection, Reply, Request};
use stockctl::case::{run_case, CaseTarget, RunOptions, TargetError};
use stockctl::cli::{build, Cli, Facts};

/// A target that records the writes it is sent and accepts them all.
#[derive(Default)]
struct Recorder {
    sent: Vec<engine::Command>,
}

impl CaseTarget for Recorder {
    fn submit(&mut self, requests: Vec<Request>) -> Result<Vec<Outcome>, TargetError> {
        let outcomes = requests.iter().map(|_| Ok(Reply::Done)).collect();
        self.sent.extend(requests.into_iter().map(|r| r.command));
        Ok(outcomes)
    }

    fn advance(&mut self, _ms: u64) -> Result<(), TargetError> {
        Ok(())
    }

    fn query(&mut self, _query: Query) -> Result<Result<Answer, Rejection>, TargetError> {
        panic!("no query is expected");
    }
}

/// The write a case line makes, after `setup` lines (whose writes are dropped).
#[track_caller]
fn case_write(setup: &str, line: &str) -> engine::Command {
    let mut target = Recorder::default();
    let text = format!("{setup}\n{line}");
    let report = run_case("t", &text, &mut target, &RunOptions::default());
    assert_eq!(report.failure, None, "{line}");
    target.sent.pop().expect("a write")
}

/// The write a stockctl command line makes, with the cluster's `facts`.
#[track_caller]
fn cli_write(argv: &[&str], facts: &Facts) -> engine::Command {
    let cli = Cli::try_parse_from(std::iter::once("stockctl").chain(argv.iter().copied()))
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    build(&cli.command, facts).expect("builds").command
}

#[test]
fn the_same_words_make_the_same_write() {
    let facts = Facts {
        scales: [("C".to_owned(), 2)].into_iter().collect(),
        groups: ["eu:online".to_owned()].into_iter().collect(),
        object_skus: vec![],
    };
    let setup = "sku C scale=2\ngroup eu:online eu:par";
    let pairs: [(&str, &[&str]); 13] = [
        (
            "reserve r1 web A@eu:par:2 C@eu:online:0.5 ttl=15m",
            &[
                "reserve",
                "r1",
                "web",
                "A@eu:par:2",
                "C@eu:online:0.5",
                "--ttl",
                "15m",
            ],
        ),
        ("set_on_hand C@eu:par 3", &["set-on-hand", "C@eu:par", "3"]),
        ("adjust A@eu:par +3", &["adjust", "A@eu:par", "+3"]),
        (
            "order o1 web C@all:1.25 ship",
            &["place-order", "o1", "--channel", "web", "C@all:1.25"],
        ),
        ("fulfil o1 A@eu:par:1", &["fulfil", "o1", "A@eu:par:1"]),
        ("cancel o1", &["cancel", "o1"]),
        (
            "return m1 o1 C@eu:par:0.5:damaged",
            &["return", "m1", "o1", "C@eu:par:0.5:damaged"],
        ),
        ("kit K C:0.5 A:2", &["kit", "K", "C:0.5", "A:2"]),
        (
            "limit C 1.5 window=1d strict",
            &["limit", "C", "1.5", "--window", "1d", "--strict"],
        ),
        ("limit C 0", &["limit", "C", "0"]),
        (
            "reserve r1 web A@all:1 ttl=15m customer=ann",
            &[
                "reserve",
                "r1",
                "web",
                "A@all:1",
                "--ttl",
                "15m",
                "--customer",
                "ann",
            ],
        ),
        (
            "order o1 pos C@eu:par:1 pickup deadline=2h customer=ann",
            &[
                "place-order",
                "o1",
                "--channel",
                "pos",
                "C@eu:par:1",
                "--pickup",
                "--deadline",
                "2h",
                "--customer",
                "ann",
            ],
        ),
        (
            "exchange m2 o1 C@eu:par:0.5:restock A@eu:par:1:scrap -> o2 pos C@eu:online:1 ship",
            &[
                "exchange",
                "m2",
                "o1",
                "--return",
                "C@eu:par:0.5:restock",
                "--return",
                "A@eu:par:1:scrap",
                "--new-order",
                "o2",
                "--channel",
                "pos",
                "C@eu:online:1",
            ],
        ),
    ];
    for (line, argv) in pairs {
        assert_eq!(case_write(setup, line), cli_write(argv, &facts), "{line}");
    }
}

#[test]
fn only_the_grammar_splits_words() {
    // Ways of reading `SKU@LOC:QTY`, quantities or `FROM->TO` by hand.
    let forbidden = [
        "split_once('@')",
        "rsplit_once(':')",
        "parse_display(",
        "\"->\"",
    ];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs")
                && path.file_name().is_some_and(|n| n != "grammar.rs")
            {
                let text = std::fs::read_to_string(&path).expect("readable file");
                for pattern in forbidden {
                    if text.contains(pattern) {
                        offenders.push(format!("{}: {pattern}", path.display()));
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}
