//! Tests of the log store: openraft's storage suite (both modes, with the real state machine),
//! reopen after appends and crashes, torn tails, corruption, purge and truncate across
//! segments, the vote. `STOCKD_LOG_MEASURE=1` also prints appends/s per mode.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::storage::RaftLogStorageExt;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};

use engine::{Command as EngineCommand, Request, RequestId};

use super::format::segment_name;
use super::*;
use crate::raft::state_machine::StateMachine;
use crate::raft::Batch;

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "stockd-log-store-{tag}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn log(&self) -> PathBuf {
        self.0.join("log")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds a fresh log store and state machine for each suite test.
struct Builder {
    durability: Durability,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = TempDir::new("suite");
        let open_error = |e: io::Error| io_error(ErrorSubject::Store, ErrorVerb::Read, e);
        let log = LogStore::open(&dir.log(), self.durability).map_err(open_error)?;
        let sm = StateMachine::open(
            &dir.0.join("sm"),
            std::sync::Arc::default(),
            std::sync::Arc::default(),
        )
        .map_err(open_error)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_suite_replicated() {
    Suite::test_all(Builder {
        durability: Durability::default(),
    })
    .expect("suite passes in replicated mode");
}

#[test]
fn openraft_suite_fsync() {
    Suite::test_all(Builder {
        durability: Durability::Fsync,
    })
    .expect("suite passes in fsync mode");
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// A normal entry carrying one small write.
fn entry(term: u64, index: u64) -> Entry {
    entry_with(term, index, 1)
}

/// A normal entry carrying a batch of `requests` small writes.
fn entry_with(term: u64, index: u64, requests: u64) -> Entry {
    let requests = (0..requests)
        .map(|i| Request {
            request_id: RequestId(u128::from(index) << 32 | u128::from(i)),
            command: EngineCommand::Adjust {
                sku: format!("sku-{i}").as_str().into(),
                location: "store-1".into(),
                delta: index as i64 + 1,
                reason: "receipt".into(),
            },
        })
        .collect();
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Batch {
            timestamp_ms: 1_700_000_000_000 + index,
            requests: std::sync::Arc::new(requests),
            authors: Default::default(),
        }),
    }
}

fn entries(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    indexes.map(|i| entry(term, i)).collect()
}

fn open(dir: &Path, durability: Durability) -> LogStore {
    LogStore::open(dir, durability).expect("open log store")
}

/// Checks the whole log: its state and every entry.
#[track_caller]
fn check(store: &mut LogStore, last_purged: Option<LogId>, want: &[Entry]) {
    let (state, got) = futures_lite(async {
        let state = store.get_log_state().await.expect("log state");
        let got = store.try_get_log_entries(..).await.expect("read entries");
        (state, got)
    });
    assert_eq!(state.last_purged_log_id, last_purged, "last purged");
    assert_eq!(
        state.last_log_id,
        want.last().map(|e| e.log_id).or(last_purged),
        "last log id"
    );
    assert_eq!(got, want, "entries");
}

/// Runs a future to completion on a small runtime of its own (the tests are sync so that a
/// store can be dropped outside any runtime).
fn futures_lite<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn append(store: &mut LogStore, entries: Vec<Entry>) {
    futures_lite(store.blocking_append(entries)).expect("append");
}

fn crash(store: LogStore) {
    futures_lite(store.crash());
}

fn segments_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

#[test]
fn fsync_mode_keeps_every_completed_append_after_a_crash() {
    let dir = TempDir::new("crash-fsync");
    let mut store = open(&dir.log(), Durability::Fsync);
    append(&mut store, entries(1, 0..=0));
    for i in 1..=40 {
        append(&mut store, vec![entry(1, i)]);
    }
    append(&mut store, entries(2, 41..=60));
    crash(store);
    let mut store = open(&dir.log(), Durability::Fsync);
    let mut want = entries(1, 0..=40);
    want.extend(entries(2, 41..=60));
    check(&mut store, None, &want);
    // Appending goes on after the recovered tail, and a plain drop (no flush) keeps it too.
    append(&mut store, entries(2, 61..=62));
    drop(store);
    let mut store = open(&dir.log(), Durability::Fsync);
    want.extend(entries(2, 61..=62));
    check(&mut store, None, &want);
}

#[test]
fn replicated_mode_keeps_flushed_appends_after_a_crash_and_everything_after_a_drop() {
    let dir = TempDir::new("crash-replicated");
    let mut store = open(&dir.log(), Durability::default());
    append(&mut store, entries(1, 1..=30));
    futures_lite(store.flush()).expect("flush");
    crash(store);
    let mut store = open(&dir.log(), Durability::default());
    check(&mut store, None, &entries(1, 1..=30));
    append(&mut store, entries(1, 31..=35));
    drop(store);
    let mut store = open(&dir.log(), Durability::default());
    check(&mut store, None, &entries(1, 1..=35));
}

#[test]
fn replicated_mode_writes_within_the_flush_interval_without_a_flush() {
    let dir = TempDir::new("interval");
    let mut store = open(
        &dir.log(),
        Durability::Replicated {
            flush_interval_ms: 20,
        },
    );
    append(&mut store, entries(1, 1..=5));
    std::thread::sleep(Duration::from_millis(600));
    crash(store);
    let mut store = open(&dir.log(), Durability::default());
    check(&mut store, None, &entries(1, 1..=5));
}

#[test]
fn pipelined_appends_past_the_queue_capacity_all_complete_in_order() {
    let dir = TempDir::new("pipelined");
    let store = open(&dir.log(), Durability::Fsync);
    let count = 3 * WRITER_QUEUE_COMMANDS_MAX as u64;
    let completed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    futures_lite(async {
        let mut pending = Vec::new();
        for i in 1..=count {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let completed = completed.clone();
            let done: writer::Done = Box::new(move |r| {
                completed.lock().expect("lock").push(i);
                let _ = tx.send(r.is_ok());
            });
            store
                .append_entries(vec![entry(1, i)], done)
                .await
                .expect("append");
            pending.push(rx);
        }
        for rx in pending {
            assert!(rx.await.expect("completion"));
        }
    });
    let completed = completed.lock().expect("lock").clone();
    assert_eq!(
        completed,
        (1..=count).collect::<Vec<_>>(),
        "completions in append order"
    );
    crash(store);
    let mut store = open(&dir.log(), Durability::Fsync);
    check(&mut store, None, &entries(1, 1..=count));
}

/// Appends 1..=10 in fsync mode and returns the segment's path.
/// Ten fsynced entries, then a crash (no shutdown record): a torn tail found next is what a
/// crash during a write leaves.
fn ten_entries(dir: &TempDir) -> PathBuf {
    let mut store = open(&dir.log(), Durability::Fsync);
    append(&mut store, entries(1, 1..=10));
    crash(store);
    dir.log().join(segment_name(1))
}

#[test]
fn a_record_cut_short_is_dropped_on_reopen() {
    let dir = TempDir::new("torn-short");
    let segment = ten_entries(&dir);
    let len = std::fs::metadata(&segment).expect("metadata").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open")
        .set_len(len - 3)
        .expect("cut");
    let mut store = open(&dir.log(), Durability::Fsync);
    check(&mut store, None, &entries(1, 1..=9));
    // The cut is on disk, and the log goes on from there.
    append(&mut store, entries(2, 10..=11));
    drop(store);
    let mut store = open(&dir.log(), Durability::Fsync);
    let mut want = entries(1, 1..=9);
    want.extend(entries(2, 10..=11));
    check(&mut store, None, &want);
}

#[test]
fn a_damaged_last_record_or_a_zero_tail_is_dropped_on_reopen() {
    let dir = TempDir::new("torn-crc");
    let segment = ten_entries(&dir);
    let mut bytes = std::fs::read(&segment).expect("read");
    let last = bytes.len() - 2;
    bytes[last] ^= 0x40;
    bytes.extend_from_slice(&[0; 100]);
    std::fs::write(&segment, &bytes).expect("write");
    let mut store = open(&dir.log(), Durability::Fsync);
    check(&mut store, None, &entries(1, 1..=9));
    drop(store);

    let dir = TempDir::new("torn-zeros");
    let segment = ten_entries(&dir);
    let mut bytes = std::fs::read(&segment).expect("read");
    bytes.extend_from_slice(&[0; 4096]);
    std::fs::write(&segment, &bytes).expect("write");
    let mut store = open(&dir.log(), Durability::Fsync);
    check(&mut store, None, &entries(1, 1..=10));
}

#[test]
fn damage_before_the_tail_refuses_to_open() {
    let dir = TempDir::new("corrupt");
    let segment = ten_entries(&dir);
    let mut bytes = std::fs::read(&segment).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&segment, &bytes).expect("write");
    let error =
        LogStore::open(&dir.log(), Durability::Fsync).expect_err("a damaged record is an error");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("refusing to start"), "{error}");

    let dir = TempDir::new("corrupt-vote");
    drop(ten_entries(&dir));
    std::fs::write(dir.log().join("vote"), b"STKDVOTE garbage").expect("write");
    let error =
        LogStore::open(&dir.log(), Durability::Fsync).expect_err("a damaged vote is an error");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn damage_in_an_older_segment_refuses_to_open() {
    let dir = TempDir::new("corrupt-old");
    let mut store = LogStore::open_with(&dir.log(), Durability::Fsync, 512, false).expect("open");
    append(&mut store, entries(1, 1..=40));
    drop(store);
    let names = segments_in(&dir.log());
    assert!(names.len() >= 3, "small segments rotate: {names:?}");
    let first = dir.log().join(&names[0]);
    let mut bytes = std::fs::read(&first).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&first, &bytes).expect("write");
    let error = LogStore::open(&dir.log(), Durability::Fsync)
        .expect_err("only the last segment may be torn");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn purge_and_truncate_survive_reopen() {
    let dir = TempDir::new("purge-truncate");
    let mut store = LogStore::open_with(&dir.log(), Durability::Fsync, 512, false).expect("open");
    append(&mut store, entries(1, 1..=50));
    let before = segments_in(&dir.log());
    futures_lite(async {
        store.purge(log_id(1, 20)).await.expect("purge");
        store.truncate(log_id(1, 41)).await.expect("truncate");
    });
    let after = segments_in(&dir.log());
    assert!(
        after.len() < before.len(),
        "whole segments below the purge point are deleted"
    );
    assert!(
        after[0] <= segment_name(21),
        "the segment holding 21 is kept: {after:?}"
    );
    check(&mut store, Some(log_id(1, 20)), &entries(1, 21..=40));
    crash(store);

    let mut store = LogStore::open_with(&dir.log(), Durability::Fsync, 512, false).expect("reopen");
    check(&mut store, Some(log_id(1, 20)), &entries(1, 21..=40));
    append(&mut store, entries(2, 41..=45));
    drop(store);
    let mut store = LogStore::open_with(&dir.log(), Durability::Fsync, 512, false).expect("reopen");
    let mut want = entries(1, 21..=40);
    want.extend(entries(2, 41..=45));
    check(&mut store, Some(log_id(1, 20)), &want);

    // A purge past the end (a snapshot installed from the leader) empties the log; the next
    // append starts after it.
    futures_lite(store.purge(log_id(3, 100))).expect("purge past the end");
    futures_lite(store.flush()).expect("flush: the purge's disk work is done before it");
    assert!(segments_in(&dir.log()).is_empty());
    drop(store);
    let mut store = LogStore::open_with(&dir.log(), Durability::Fsync, 512, false).expect("reopen");
    check(&mut store, Some(log_id(3, 100)), &[]);
    append(&mut store, entries(3, 101..=102));
    drop(store);
    let mut store = LogStore::open_with(&dir.log(), Durability::Fsync, 512, false).expect("reopen");
    check(&mut store, Some(log_id(3, 100)), &entries(3, 101..=102));
    // Truncating everything after the purge point leaves just the purge point.
    futures_lite(store.truncate(log_id(3, 101))).expect("truncate all");
    drop(store);
    let mut store = LogStore::open_with(&dir.log(), Durability::Fsync, 512, false).expect("reopen");
    check(&mut store, Some(log_id(3, 100)), &[]);
}

/// Entries `indexes` of term 1 read back from `store`, through `try_get_log_entries`.
#[track_caller]
fn read(store: &mut LogStore, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    futures_lite(store.try_get_log_entries(indexes)).expect("read entries")
}

#[test]
fn applied_entries_leave_memory_and_are_read_back_from_the_segments() {
    for durability in [Durability::default(), Durability::Fsync] {
        let dir = TempDir::new("evict");
        let mut store = LogStore::open_with(&dir.log(), durability, 4_096, false).expect("open");
        store.set_cache_bytes_max(2_048);
        let (applied, follow) = tokio::sync::watch::channel(0);
        store.follow_applied(follow);
        let all = entries(1, 1..=300);
        for chunk in all.chunks(10) {
            append(&mut store, chunk.to_vec());
        }
        assert_eq!(
            store.cached_bytes(),
            store.log_bytes(),
            "nothing applied: all in memory"
        );

        // Entries 1..=200 applied: the next appends drop the oldest of them from memory.
        applied.send_replace(200);
        let more = entries(1, 301..=310);
        append(&mut store, more.clone());
        let dropped = store.log_bytes() - store.cached_bytes();
        assert!(dropped > 0, "applied entries left memory");
        assert!(
            store.cached_bytes() <= 2_048 + (110 * store.log_bytes() / 310) + 100,
            "what stays is the unapplied entries and about the budget: {} bytes",
            store.cached_bytes()
        );
        let mut want = all.clone();
        want.extend(more);
        check(&mut store, None, &want);
        // Ranges within the dropped part (across segments) and across its end.
        assert_eq!(read(&mut store, 5..=150), want[4..150]);
        assert_eq!(read(&mut store, 150..=260), want[149..260]);

        // A cut into applied entries is refused and changes nothing.
        assert!(futures_lite(store.truncate(log_id(1, 50))).is_err());
        check(&mut store, None, &want);

        // A purge inside the dropped part, then past it.
        futures_lite(store.purge(log_id(1, 60))).expect("purge");
        check(&mut store, Some(log_id(1, 60)), &want[60..]);
        assert_eq!(
            read(&mut store, 1..=70),
            want[60..70],
            "purged entries are left out"
        );
        futures_lite(store.purge(log_id(1, 250))).expect("purge");
        check(&mut store, Some(log_id(1, 250)), &want[250..]);
        crash(store);

        let mut store = LogStore::open_with(&dir.log(), durability, 4_096, false).expect("reopen");
        check(&mut store, Some(log_id(1, 250)), &want[250..]);
    }
}

/// Encoded bytes of `entries` in the log: what `log_bytes` counts for them.
fn encoded(entries: &[Entry]) -> u64 {
    let mut scratch = Vec::new();
    entries
        .iter()
        .map(|e| {
            scratch.clear();
            u64::from(format::encode_record(e, &mut scratch).expect("encode"))
        })
        .sum()
}

/// A cut of unapplied entries while older applied ones are out of memory (a node that applied
/// more than the cache since its last snapshot, then met a new leader) cuts only the sizes of
/// the entries it removes: the byte counts stay those of the log, the log goes on, and after a
/// reopen (which counts the bytes afresh) they are the same.
#[test]
fn a_cut_after_entries_left_memory_keeps_the_byte_counts() {
    for durability in [Durability::default(), Durability::Fsync] {
        let dir = TempDir::new("evict-truncate");
        let mut store = LogStore::open_with(&dir.log(), durability, 4_096, false).expect("open");
        store.set_cache_bytes_max(2_048);
        let (applied, follow) = tokio::sync::watch::channel(0);
        store.follow_applied(follow);
        let mut want = entries(1, 1..=300);
        for chunk in want.chunks(10) {
            append(&mut store, chunk.to_vec());
        }
        applied.send_replace(200);
        append(&mut store, entries(1, 301..=310));
        assert!(
            store.log_bytes() > store.cached_bytes(),
            "applied entries left memory"
        );

        // Entries 305..=310 were never committed: a new leader cuts them.
        futures_lite(store.truncate(log_id(1, 305))).expect("truncate");
        want.extend(entries(1, 301..=304));
        assert_eq!(
            store.log_bytes(),
            encoded(&want),
            "bytes of the log after the cut"
        );
        assert!(store.cached_bytes() <= store.log_bytes());
        check(&mut store, None, &want);

        // The log goes on: appends (which drop more from memory), reads, purges.
        let term2 = entries(2, 305..=330);
        append(&mut store, term2.clone());
        want.extend(term2);
        applied.send_replace(320);
        append(&mut store, entries(2, 331..=340));
        want.extend(entries(2, 331..=340));
        assert_eq!(store.log_bytes(), encoded(&want));
        assert_eq!(read(&mut store, 100..=310), want[99..310]);
        futures_lite(store.purge(log_id(1, 150))).expect("purge");
        assert_eq!(store.log_bytes(), encoded(&want[150..]));
        assert!(store.cached_bytes() <= store.log_bytes());
        check(&mut store, Some(log_id(1, 150)), &want[150..]);
        futures_lite(store.flush()).expect("flush");
        let counted = store.log_bytes();
        crash(store);

        let mut store = LogStore::open_with(&dir.log(), durability, 4_096, false).expect("reopen");
        assert_eq!(store.log_bytes(), counted, "a reopen counts the same bytes");
        check(&mut store, Some(log_id(1, 150)), &want[150..]);
    }
}

/// When the unapplied entries alone take more than the cache (a node that appends faster
/// than it applies, or a leader with many large entries in flight), a new leader may cut the
/// log right after the last applied entry: the log then ends at that entry, which is not in
/// memory any more than the ones before it unless the store keeps it there. Its log id stays
/// the last one, and the new leader's entries follow it.
#[test]
fn a_cut_right_after_the_applied_entries_leaves_the_last_applied_one_last() {
    for durability in [Durability::default(), Durability::Fsync] {
        let dir = TempDir::new("evict-cut-all");
        let mut store = LogStore::open_with(&dir.log(), durability, 4_096, false).expect("open");
        store.set_cache_bytes_max(2_048);
        let (applied, follow) = tokio::sync::watch::channel(0);
        store.follow_applied(follow);
        let mut want = entries(1, 1..=50);
        append(&mut store, want.clone());
        applied.send_replace(50);
        let unapplied = entries(1, 51..=150);
        assert!(
            encoded(&unapplied) > 2_048,
            "the unapplied entries exceed the cache"
        );
        append(&mut store, unapplied);
        assert!(
            store.log_bytes() > store.cached_bytes(),
            "applied entries left memory"
        );

        // 51..=150 were never committed (50 was): a new leader cuts them all.
        futures_lite(store.truncate(log_id(1, 51))).expect("truncate");
        check(&mut store, None, &want);
        assert_eq!(store.last_log_id(), Some(log_id(1, 50)));
        assert_eq!(store.log_bytes(), encoded(&want));
        let term2 = entries(2, 51..=60);
        append(&mut store, term2.clone());
        want.extend(term2);
        check(&mut store, None, &want);
        assert_eq!(read(&mut store, 1..=60), want);
        futures_lite(store.flush()).expect("flush");
        crash(store);

        let mut store = LogStore::open_with(&dir.log(), durability, 4_096, false).expect("reopen");
        check(&mut store, None, &want);
    }
}

/// A failed read of entries that left memory is an IO error like a failed write: the writer
/// retries it (reporting the error meanwhile) instead of answering openraft with a storage
/// error, which stops the node's Raft for good (openraft 0.9 makes a replication read error
/// fatal).
#[test]
fn a_failing_read_of_entries_that_left_memory_is_retried() {
    let dir = TempDir::new("evict-read-error");
    let mut store =
        LogStore::open_with(&dir.log(), Durability::default(), 4_096, false).expect("open");
    store.set_cache_bytes_max(2_048);
    let (applied, follow) = tokio::sync::watch::channel(0);
    store.follow_applied(follow);
    let want = entries(1, 1..=300);
    for chunk in want.chunks(10) {
        append(&mut store, chunk.to_vec());
    }
    applied.send_replace(300);
    append(&mut store, entries(1, 301..=301));
    assert!(store.log_bytes() > store.cached_bytes());
    futures_lite(store.flush()).expect("flush");
    // Nothing is staged, so the read's own IO steps take the injected failures.
    store.inject_io_failures(3);
    assert_eq!(read(&mut store, 1..=100), want[..100]);
    assert!(store.io_errors_total() >= 3, "the failures were reported");
    assert!(store.io_error().is_none(), "and the read healed");
}

#[test]
fn truncate_across_segments_in_replicated_mode_survives_reopen() {
    let dir = TempDir::new("truncate-replicated");
    let mut store =
        LogStore::open_with(&dir.log(), Durability::default(), 512, false).expect("open");
    append(&mut store, entries(1, 0..=60));
    futures_lite(store.truncate(log_id(1, 7))).expect("truncate");
    append(&mut store, entries(2, 7..=9));
    // In replicated mode a crash may lose what the writer still holds (by design, within the
    // flush interval): flush first so that the test is about truncation, not timing.
    futures_lite(store.flush()).expect("flush");
    crash(store);
    let mut store =
        LogStore::open_with(&dir.log(), Durability::default(), 512, false).expect("reopen");
    let mut want = entries(1, 0..=6);
    want.extend(entries(2, 7..=9));
    check(&mut store, None, &want);
}

#[test]
fn the_vote_survives_a_crash_in_both_modes() {
    for durability in [Durability::default(), Durability::Fsync] {
        let dir = TempDir::new("vote");
        let mut store = open(&dir.log(), durability);
        let vote = openraft::Vote::new_committed(7, 3);
        futures_lite(async {
            assert_eq!(store.read_vote().await.expect("read"), None);
            store
                .save_vote(&openraft::Vote::new(6, 2))
                .await
                .expect("save");
            store.save_vote(&vote).await.expect("save");
        });
        crash(store);
        let mut store = open(&dir.log(), durability);
        // Read back as not committed: a restarted node never resumes leadership from it.
        assert_eq!(
            futures_lite(store.read_vote()).expect("read"),
            Some(openraft::Vote::new(7, 3)),
            "{durability}"
        );
    }
}

#[test]
fn the_committed_id_is_recorded_with_the_flush_that_covers_it() {
    for durability in [Durability::default(), Durability::Fsync] {
        let dir = TempDir::new("committed");
        let mut store = open(&dir.log(), durability);
        append(&mut store, entries(1, 1..=10));
        futures_lite(store.save_committed(Some(log_id(1, 8)))).expect("save");
        futures_lite(store.flush()).expect("flush");
        // A crash, not a graceful stop: only the marker in the log tells.
        crash(store);
        let mut store = open(&dir.log(), durability);
        assert_eq!(
            futures_lite(store.read_committed()).expect("read"),
            Some(log_id(1, 8)),
            "{durability}"
        );
        // A committed id past what was written is recorded as the last entry written (all of
        // this node's entries up to its commit point were committed).
        futures_lite(store.save_committed(Some(log_id(1, 15)))).expect("save");
        drop(store);
        let mut store = open(&dir.log(), durability);
        assert_eq!(
            futures_lite(store.read_committed()).expect("read"),
            Some(log_id(1, 10)),
            "{durability}"
        );
    }
}

#[test]
fn a_log_shorter_than_at_its_last_stop_refuses_in_fsync_mode_and_recovers_in_replicated() {
    for durability in [Durability::Fsync, Durability::default()] {
        let dir = TempDir::new("cut-after-stop");
        let mut store = open(&dir.log(), durability);
        append(&mut store, entries(1, 1..=10));
        futures_lite(store.save_committed(Some(log_id(1, 9)))).expect("save");
        drop(store);
        let segment = dir.log().join(segment_name(1));
        let len = std::fs::metadata(&segment).expect("metadata").len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .expect("open")
            .set_len(len / 2)
            .expect("cut");
        match durability {
            Durability::Fsync => {
                let error = LogStore::open(&dir.log(), durability).expect_err("refuses");
                assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
                let message = error.to_string();
                assert!(message.contains("when the node last stopped"), "{message}");
                assert!(message.contains("move it away"), "{message}");
            }
            Durability::Replicated { .. } => {
                let mut store = open(&dir.log(), durability);
                assert!(store.recovering());
                let reason = store.recovery_reason().unwrap_or_default().to_owned();
                assert!(reason.contains("when the node last stopped"), "{reason}");
                let last = store.last_log_id().expect("some entries").index;
                assert!(last < 10);
                // What is left is committed; the rest comes from the leader.
                assert_eq!(
                    futures_lite(store.read_committed()).expect("read"),
                    Some(log_id(1, last))
                );
            }
        }
    }
}

#[test]
fn recovering_after_a_crash_that_may_have_lost_acknowledged_entries() {
    // replicated: any crash may have lost the unflushed tail.
    let dir = TempDir::new("recovering-replicated");
    let mut store = open(&dir.log(), Durability::default());
    assert!(!store.recovering(), "a new log lost nothing");
    append(&mut store, entries(1, 1..=5));
    drop(store);
    let mut store = open(&dir.log(), Durability::default());
    assert!(!store.recovering(), "a graceful stop lost nothing");
    append(&mut store, entries(1, 6..=7));
    crash(store);
    let store = open(&dir.log(), Durability::default());
    assert!(store.recovering());
    store.caught_up();
    assert!(!store.recovering());
    drop(store);

    // fsync: a crash recovers too. Nothing acknowledged should be lost, but neither a disk
    // that drops confirmed writes nor a restart in another mode shows on reopen.
    let dir = TempDir::new("recovering-fsync");
    let segment = ten_entries(&dir);
    let store = open(&dir.log(), Durability::Fsync);
    assert!(store.recovering(), "a crash in fsync mode");
    crash(store);
    let len = std::fs::metadata(&segment).expect("metadata").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open")
        .set_len(len - 3)
        .expect("cut");
    let store = open(&dir.log(), Durability::Fsync);
    assert!(store.recovering());
    let reason = store.recovery_reason().unwrap_or_default().to_owned();
    assert!(reason.contains("torn log tail"), "{reason}");
}

#[test]
fn whole_records_lost_after_a_crash_make_the_node_recover_in_either_mode() {
    // A cut exactly at a record boundary leaves no torn tail: the log simply ends earlier.
    // Written in one mode, reopened in either, the node must not vote as if it lost nothing.
    for (written, reopened) in [
        (Durability::Fsync, Durability::Fsync),
        (Durability::default(), Durability::Fsync),
    ] {
        let dir = TempDir::new("boundary-cut");
        let mut store = open(&dir.log(), written);
        append(&mut store, entries(1, 1..=10));
        // Past the flush interval: in replicated mode the records are on disk too.
        std::thread::sleep(Duration::from_millis(FLUSH_INTERVAL_MS_DEFAULT * 4));
        crash(store);
        let segment = dir.log().join(segment_name(1));
        let bytes = std::fs::read(&segment).expect("read");
        let offsets = super::format::parse_segment(&bytes, 1, true)
            .expect("parses")
            .offsets;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .expect("open")
            .set_len(offsets[7])
            .expect("cut at a record boundary");
        let mut store = open(&dir.log(), reopened);
        check(&mut store, None, &entries(1, 1..=7));
        assert!(store.recovering(), "{written:?} then {reopened:?}");
    }
}

#[test]
fn a_new_log_of_a_listed_member_recovers() {
    let dir = TempDir::new("new-member");
    let store = LogStore::open_as_member(&dir.log(), Durability::default()).expect("open");
    assert!(store.recovering(), "a wiped member looks new");
    drop(store);
    let dir = TempDir::new("new-node");
    let store = open(&dir.log(), Durability::default());
    assert!(
        !store.recovering(),
        "a node waiting to be added (--join) lost nothing"
    );
}

#[test]
fn a_refusal_to_open_stands_until_the_operator_acts() {
    let dir = TempDir::new("refuse-twice");
    let mut store = open(&dir.log(), Durability::Fsync);
    append(&mut store, entries(1, 1..=10));
    drop(store);
    let segment = dir.log().join(segment_name(1));
    let len = std::fs::metadata(&segment).expect("metadata").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open")
        .set_len(len / 2)
        .expect("cut");
    for attempt in 1..=3 {
        let refused = LogStore::open(&dir.log(), Durability::Fsync);
        assert!(refused.is_err(), "start {attempt} must refuse too");
    }
}

/// Appends `entries` with a completion that reports on the returned channel.
fn append_watched(store: &LogStore, entries: Vec<Entry>) -> std::sync::mpsc::Receiver<bool> {
    let (tx, rx) = std::sync::mpsc::channel();
    let done: Done = Box::new(move |result| {
        let _ = tx.send(result.is_ok());
    });
    futures_lite(store.append_entries(entries, done)).expect("queued");
    rx
}

#[test]
fn while_recovering_appends_complete_only_once_fsynced() {
    let dir = TempDir::new("recovering-durable");
    let mut store = open(&dir.log(), Durability::default());
    append(&mut store, entries(1, 1..=3));
    futures_lite(store.flush()).expect("flush");
    crash(store);
    // A slow flush interval: an append completed from memory would not wait for it.
    let slow = Durability::Replicated {
        flush_interval_ms: FLUSH_INTERVAL_MS_MAX,
    };
    let store = open(&dir.log(), slow);
    assert!(store.recovering());
    let done = append_watched(&store, entries(1, 4..=4));
    assert_eq!(done.recv_timeout(Duration::from_secs(5)), Ok(true));
    crash(store);
    let mut store = open(&dir.log(), slow);
    check(&mut store, None, &entries(1, 1..=4));
    store.caught_up();
    // Caught up: completed from memory at once, written within the (long) interval.
    let done = append_watched(&store, entries(1, 5..=5));
    assert_eq!(done.recv_timeout(Duration::from_secs(1)), Ok(true));
}

#[test]
fn a_failing_disk_delays_appends_until_it_works_and_loses_nothing() {
    for durability in [Durability::Fsync, Durability::default()] {
        let dir = TempDir::new("io-errors");
        let mut store = open(&dir.log(), durability);
        append(&mut store, entries(1, 1..=3));
        // Every write and fsync fails until the faults are lifted.
        store.inject_io_failures(u32::MAX);
        let first = append_watched(&store, entries(1, 4..=4));
        let started = Instant::now();
        while store.io_error().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "no IO error reported"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let error = store.io_error().unwrap_or_default();
        assert!(error.contains(&dir.log().display().to_string()), "{error}");
        // Once the failure is known, even replicated mode waits for the disk.
        let second = append_watched(&store, entries(1, 5..=5));
        assert_eq!(
            second.recv_timeout(Duration::from_millis(300)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout),
            "{durability}: an append completed while the disk failed"
        );
        store.inject_io_failures(0);
        assert_eq!(second.recv_timeout(Duration::from_secs(5)), Ok(true));
        assert_eq!(first.recv_timeout(Duration::from_secs(5)), Ok(true));
        assert!(store.io_error().is_none());
        assert!(store.io_errors_total() > 0);
        futures_lite(store.flush()).expect("flush");
        crash(store);
        let mut store = open(&dir.log(), durability);
        check(&mut store, None, &entries(1, 1..=5));
    }
}

/// openraft awaits `purge` on its core task (which also commits and replies), so a purge
/// must not wait for the disk: while every write and fsync fails (the writer retrying), a
/// purge still returns, and the log in memory is purged at once; the disk catches up once
/// it works again.
#[test]
fn a_purge_does_not_wait_for_the_disk() {
    let dir = TempDir::new("purge-no-wait");
    let mut store = LogStore::open_with(&dir.log(), Durability::Fsync, 512, false).expect("open");
    append(&mut store, entries(1, 1..=50));
    futures_lite(store.flush()).expect("flush");
    store.inject_io_failures(u32::MAX);
    // Staged but not yet written: the purge's fsync of everything before it keeps failing.
    let staged = append_watched(&store, entries(1, 51..=51));
    let handle = store.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let purging = std::thread::spawn(move || {
        let result = futures_lite(store.purge(log_id(1, 30)));
        let _ = tx.send(result.is_ok());
        store
    });
    let answered = rx.recv_timeout(Duration::from_secs(10));
    handle.inject_io_failures(0); // lets a purge that waits for the disk finish (old code)
    let mut store = purging.join().expect("purge thread");
    assert_eq!(answered, Ok(true), "the purge waited for a failing disk");
    check(&mut store, Some(log_id(1, 30)), &entries(1, 31..=51));
    futures_lite(store.flush()).expect("flush once the disk works");
    assert_eq!(staged.recv_timeout(Duration::from_secs(5)), Ok(true));
    crash(store);
    let mut store = LogStore::open_with(&dir.log(), Durability::Fsync, 512, false).expect("reopen");
    check(&mut store, Some(log_id(1, 30)), &entries(1, 31..=51));
}

#[test]
fn bad_appends_and_limits_are_errors() {
    let dir = TempDir::new("errors");
    let mut store = open(&dir.log(), Durability::Fsync);
    append(&mut store, entries(1, 1..=3));
    assert!(
        futures_lite(store.blocking_append(vec![entry(1, 5)])).is_err(),
        "a hole"
    );
    assert!(
        futures_lite(store.blocking_append(vec![entry(1, 4), entry(1, 6)])).is_err(),
        "a hole inside"
    );
    check(&mut store, None, &entries(1, 1..=3));
    let error = LogStore::open(
        &dir.0.join("other"),
        Durability::Replicated {
            flush_interval_ms: 0,
        },
    )
    .expect_err("interval 0 is rejected");
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert_eq!("fsync".parse::<Durability>(), Ok(Durability::Fsync));
    assert_eq!(
        "replicated".parse::<Durability>(),
        Ok(Durability::default())
    );
    assert!("sometimes".parse::<Durability>().is_err());
}

/// Appends/s per mode, printed (not asserted): `STOCKD_LOG_MEASURE=1 cargo test -p server
/// --release measure_appends -- --nocapture`.
#[test]
fn measure_appends() {
    if std::env::var_os("STOCKD_LOG_MEASURE").is_none() {
        return;
    }
    const SEQUENTIAL: u64 = 1_000;
    const PIPELINED_BYTES: u64 = 64 << 20;
    for requests in [1, 100] {
        for durability in [Durability::default(), Durability::Fsync] {
            measure(durability, requests, SEQUENTIAL, PIPELINED_BYTES);
        }
    }
}

/// Appends `sequential` entries of `requests` writes one at a time, then about
/// `pipelined_bytes` of them without waiting in between, and prints the rates.
fn measure(durability: Durability, requests: u64, sequential: u64, pipelined_bytes: u64) {
    let dir = TempDir::new("measure");
    let store = open(&dir.log(), durability);
    let record_bytes = {
        let mut buf = Vec::new();
        u64::from(format::encode_record(&entry_with(1, 1, requests), &mut buf).expect("encode"))
    };
    let pipelined = (pipelined_bytes / record_bytes).clamp(1_000, 100_000);
    futures_lite(async {
        // One entry per append, each waiting for its completion (fsync latency bound).
        let batch: Vec<Entry> = (1..=sequential)
            .map(|i| entry_with(1, i, requests))
            .collect();
        let started = Instant::now();
        let mut s = store.clone();
        for entry in batch {
            s.blocking_append(vec![entry]).await.expect("append");
        }
        let one_at_a_time = sequential as f64 / started.elapsed().as_secs_f64();
        // One entry per append, many in flight (openraft does not wait for the callback
        // before the next append): group commit.
        let batch: Vec<Entry> = (sequential + 1..=sequential + pipelined)
            .map(|i| entry_with(1, i, requests))
            .collect();
        let started = Instant::now();
        let mut pending = Vec::new();
        for entry in batch {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let done: writer::Done = Box::new(move |r| {
                let _ = tx.send(r.is_ok());
            });
            store
                .append_entries(vec![entry], done)
                .await
                .expect("append");
            pending.push(rx);
        }
        for rx in pending {
            assert!(rx.await.expect("completion"));
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{durability}, {requests} writes/entry ({record_bytes} B/record): {one_at_a_time:.0} appends/s one at a \
             time, {:.0} appends/s pipelined ({:.0} MB/s)",
            pipelined as f64 / elapsed,
            (pipelined * record_bytes) as f64 / elapsed / 1e6,
        );
    });
}

/// Runs each test of openraft's suite on its own and reports which fail (the suite's
/// `test_all` stops at the first failure).
#[test]
fn openraft_suite_each() {
    type S = Suite<TypeConfig, LogStore, StateMachine, Builder, TempDir>;
    macro_rules! each {
        ($durability:expr; $($name:ident),* $(,)?) => {{
            let builder = Builder { durability: $durability };
            let mut failed = Vec::new();
            $(
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let runtime = tokio::runtime::Runtime::new().expect("runtime");
                    let result = runtime.block_on(async {
                        let (_guard, store, sm) = builder.build().await?;
                        S::$name(store, sm).await
                    });
                    result.map_err(|e| e.to_string())
                }));
                let ok = matches!(result, Ok(Ok(())));
                println!("{} {}: {}", builder.durability, stringify!($name), if ok { "pass" } else { "FAIL" });
                if !ok {
                    failed.push(format!("{}: {:?}", stringify!($name), result.map_err(|_| "panic")));
                }
            )*
            failed
        }};
    }
    for durability in [Durability::default(), Durability::Fsync] {
        let failed = each!(durability;
            last_membership_in_log_initial, last_membership_in_log, last_membership_in_log_multi_step,
            get_membership_initial, get_membership_from_log_and_empty_sm, get_membership_from_empty_log_and_sm,
            get_membership_from_log_le_sm_last_applied, get_membership_from_log_gt_sm_last_applied_1,
            get_membership_from_log_gt_sm_last_applied_2, get_initial_state_without_init,
            get_initial_state_membership_from_log_and_sm, get_initial_state_with_state,
            get_initial_state_last_log_gt_sm, get_initial_state_last_log_lt_sm, get_initial_state_log_ids,
            get_initial_state_re_apply_committed, save_vote, get_log_entries, limited_get_log_entries,
            try_get_log_entry, initial_logs, get_log_state, get_log_id, last_id_in_log, last_applied_state,
            purge_logs_upto_0, purge_logs_upto_5, purge_logs_upto_20, delete_logs_since_11, delete_logs_since_0,
            append_to_log, snapshot_meta, apply_single, apply_multiple,
        );
        assert!(failed.is_empty(), "{durability}: {failed:#?}");
    }
}
