//! The embedded queue against a real redb file in a temporary folder.

use super::*;

fn fr(name: &str) -> FunctionRef {
    FunctionRef { name: name.to_owned(), namespace: "openfaas-fn".to_owned() }
}
use crate::Call;
use redb::ReadableTableMetadata;

fn calls(max_calls: usize) -> Limits {
    Limits { max_calls, ..Limits::default() }
}

fn call(id: &str, function: &str) -> Call {
    Call {
        id: id.into(),
        function: function.into(),
        namespace: "openfaas-fn".into(),
        method: "POST".into(),
        path: "/".into(),
        headers: vec![("content-type".into(), "text/plain".into())],
        body: Bytes::from_static(b"hello"),
        callback: None,
        reply: None,
        accepted_at: now_ms(),
    }
}

#[tokio::test]
async fn an_id_is_never_taken_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    let q = EmbeddedQueue::open(&path, calls(100)).unwrap();
    q.enqueue(call("same", "f")).await.unwrap();
    let taken = |r: Result<()>| matches!(r, Err(QueueError::Exists(id)) if id == "same");
    assert!(taken(q.enqueue(call("same", "g")).await), "pending");
    let running = q.take(&fr("f"), u64::MAX).await.unwrap();
    assert_eq!(running.call.function, "f", "the first one is what runs");
    assert!(taken(q.enqueue(call("same", "g")).await), "running");
    q.done("same", 1, Some(200), None).await.unwrap();
    assert!(taken(q.enqueue(call("same", "g")).await), "settled");
    drop(q);
    let q = EmbeddedQueue::open(&path, calls(100)).unwrap();
    assert!(taken(q.enqueue(call("same", "g")).await), "and after a restart");
}

#[tokio::test]
async fn calls_survive_a_reopen_in_order_and_running_ones_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    {
        let q = EmbeddedQueue::open(&path, calls(100)).unwrap();
        for i in 0..5 {
            q.enqueue(call(&format!("c{i}"), "f")).await.unwrap();
        }
        q.enqueue(call("g0", "g")).await.unwrap();
        assert_eq!(q.ready_functions(), vec![fr("f"), fr("g")]);
        let first = q.take(&fr("f"), u64::MAX).await.unwrap();
        assert_eq!(first.call.id, "c0");
        q.done("c0", 1, Some(200), None).await.unwrap();
        let second = q.take(&fr("f"), u64::MAX).await.unwrap();
        assert_eq!(second.call.id, "c1");
        assert_eq!(q.status_now("c1").unwrap().state, "running");
        // c1 running when the process "dies".
    }
    let q = EmbeddedQueue::open(&path, calls(100)).unwrap();
    let mut ids: Vec<String> = Vec::new();
    while let Some(e) = q.take(&fr("f"), u64::MAX).await {
        ids.push(e.call.id);
    }
    assert_eq!(ids, vec!["c1", "c2", "c3", "c4"]);
    assert_eq!(&q.take(&fr("g"), u64::MAX).await.unwrap().call.body[..], b"hello");
    assert_eq!(q.status_now("c0").unwrap().state, "done");
    assert_eq!(q.status_now("c0").unwrap().status, Some(200));
}

#[tokio::test]
async fn retries_wait_for_their_time_and_dead_letters_replay() {
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(&dir.path().join("q"), calls(100)).unwrap();
    q.enqueue(call("a", "f")).await.unwrap();
    let e = q.take(&fr("f"), u64::MAX).await.unwrap();
    let later = now_ms() + 60_000;
    q.retry("a", Progress { attempts: 1, not_before: later, ..e.progress.clone() }).await.unwrap();
    assert!(q.ready_functions().is_empty(), "not due yet");
    assert_eq!(q.next_due(), Some(later));
    assert_eq!(q.status_now("a").unwrap().state, "retrying");
    q.retry("a", Progress { attempts: 1, not_before: 0, ..e.progress.clone() }).await.unwrap();
    assert_eq!(q.ready_functions(), vec![fr("f")]);
    let e = q.take(&fr("f"), u64::MAX).await.unwrap();
    let letter = DeadLetter {
        call: e.call.clone(),
        attempts: 3,
        last: None,
        error: Some("gone".into()),
        failed_at: now_ms(),
    };
    q.dead_letter("a", letter).await.unwrap();
    assert_eq!(q.dead_letters().await.unwrap().len(), 1);
    assert_eq!(q.status_now("a").unwrap().state, "dead-lettered");
    assert_eq!(q.stats().await.dead_lettered.get("f.openfaas-fn"), Some(&1));
    q.replay("a").await.unwrap();
    assert!(q.dead_letters().await.unwrap().is_empty());
    assert_eq!(q.take(&fr("f"), u64::MAX).await.unwrap().progress.attempts, 0);
    assert!(matches!(q.replay("zz").await, Err(QueueError::NotFound(_))));
}

#[tokio::test]
async fn a_full_queue_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(&dir.path().join("q"), calls(2)).unwrap();
    q.enqueue(call("a", "f")).await.unwrap();
    q.enqueue(call("b", "f")).await.unwrap();
    assert!(matches!(q.enqueue(call("c", "f")).await, Err(QueueError::Full(_))));
    assert_eq!(q.stats().await.pending.get("f.openfaas-fn"), Some(&2));
}

fn big(id: &str, function: &str, len: usize, byte: u8) -> Call {
    Call { body: Bytes::from(vec![byte; len]), ..call(id, function) }
}

fn files_in(q: &EmbeddedQueue) -> usize {
    std::fs::read_dir(q.body_folder()).unwrap().count()
}

#[tokio::test]
async fn large_bodies_are_files_read_back_when_taken_and_removed_when_settled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.redb");
    {
        let q = EmbeddedQueue::open(&path, Limits::default()).unwrap();
        q.enqueue(big("a", "f", 3 << 20, b'a')).await.unwrap();
        q.enqueue(big("b", "f", 1000, b'b')).await.unwrap();
        q.enqueue(big("c", "f", INLINE_MAX + 1, b'c')).await.unwrap();
        assert_eq!(files_in(&q), 2, "the small one is a row");
        // Memory holds no body: what is kept per call is its metadata.
        assert!(q.lock().entries.values().all(|s| s.entry.call.body.is_empty()));
        let a = q.take(&fr("f"), u64::MAX).await.unwrap();
        assert_eq!(a.call.body.len(), 3 << 20);
        assert!(a.call.body.iter().all(|&b| b == b'a'));
        q.done("a", 1, Some(200), None).await.unwrap();
        assert_eq!(files_in(&q), 1, "its file went with it");
    }
    // An orphan (a crash between a body's file and its call's commit)
    // goes at the next start; the others stay.
    std::fs::write(path.with_extension("bodies").join("999999"), b"orphan").unwrap();
    let q = EmbeddedQueue::open(&path, Limits::default()).unwrap();
    assert_eq!(files_in(&q), 1);
    let b = q.take(&fr("f"), u64::MAX).await.unwrap();
    assert_eq!(&b.call.body[..], &[b'b'; 1000][..]);
    let c = q.take(&fr("f"), u64::MAX).await.unwrap();
    assert_eq!(c.call.body.len(), INLINE_MAX + 1);
    q.done("b", 1, Some(200), None).await.unwrap();
    q.done("c", 1, Some(200), None).await.unwrap();
    assert_eq!(files_in(&q), 0);
    assert_eq!(q.bytes(&fr("f")), (0, 0));
    let blobs = q.db.begin_read().unwrap().open_table(BLOBS).unwrap().len().unwrap();
    assert_eq!(blobs, 0, "no body row is left");
}

#[tokio::test]
async fn bytes_are_bounded_in_all_and_per_function_dead_letters_included() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits { max_calls: 100, max_bytes: 11 << 20, max_function_bytes: 4 << 20 };
    let q = EmbeddedQueue::open(&dir.path().join("q"), limits).unwrap();
    q.enqueue(big("f1", "f", 3 << 20, 1)).await.unwrap();
    let full = |r: Result<()>, what: &str| match r {
        Err(QueueError::Full(why)) => assert!(why.contains(what), "{why}"),
        other => panic!("{other:?}"),
    };
    full(q.enqueue(big("f2", "f", 2 << 20, 1)).await, "--queue-max-function-bytes");
    q.enqueue(big("g1", "g", 3 << 20, 1)).await.unwrap();
    q.enqueue(big("h1", "h", 3 << 20, 1)).await.unwrap();
    full(q.enqueue(big("k1", "k", 3 << 20, 1)).await, "--queue-max-bytes");
    assert!(!q.lock().entries.contains_key("k1"));
    // A dead letter holds its bytes until it is deleted.
    let e = q.take(&fr("f"), u64::MAX).await.unwrap();
    let letter = DeadLetter { call: e.call, attempts: 3, last: None, error: None, failed_at: now_ms() };
    q.dead_letter("f1", letter).await.unwrap();
    assert_eq!(q.bytes(&fr("f")).1, big("f1", "f", 3 << 20, 1).size(), "body and metadata");
    full(q.enqueue(big("f2", "f", 1 << 20, 1)).await, "--queue-max-function-bytes");
    q.delete_dead_letter("f1").await.unwrap();
    q.enqueue(big("f2", "f", 2 << 20, 1)).await.unwrap();
    assert_eq!(files_in(&q), 3);
}

#[tokio::test]
async fn a_call_larger_than_the_room_given_waits() {
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(&dir.path().join("q"), Limits::default()).unwrap();
    q.enqueue(big("a", "f", 1 << 20, 1)).await.unwrap();
    assert!(q.take(&fr("f"), 1000).await.is_none());
    assert_eq!(q.status_now("a").unwrap().state, "queued", "still in line");
    assert_eq!(q.take(&fr("f"), 2 << 20).await.unwrap().call.id, "a");
}

#[tokio::test]
async fn answers_kept_for_callbacks_and_dead_letters_are_stored_like_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    let q = EmbeddedQueue::open(&path, Limits::default()).unwrap();
    q.enqueue(big("a", "f", 200_000, b'x')).await.unwrap();
    let e = q.take(&fr("f"), u64::MAX).await.unwrap();
    let answer = crate::Outcome {
        status: 200,
        headers: vec![],
        body: Bytes::from(vec![b'r'; 300_000]),
        duration_secs: 0.1,
    };
    let progress = Progress { attempts: 1, result: Some(answer.clone()), ..e.progress };
    q.retry("a", progress).await.unwrap();
    assert_eq!(files_in(&q), 2);
    assert_eq!(q.status_now("a").unwrap().state, "callback");
    drop(q);
    let q = EmbeddedQueue::open(&path, Limits::default()).unwrap();
    let e = q.take(&fr("f"), u64::MAX).await.unwrap();
    assert_eq!(e.progress.result.as_ref().unwrap().body, answer.body, "the answer came back");
    assert_eq!(e.call.body.len(), 200_000);
    let letter =
        DeadLetter { call: e.call, attempts: 1, last: Some(answer), error: None, failed_at: now_ms() };
    q.dead_letter("a", letter).await.unwrap();
    assert_eq!(files_in(&q), 2, "the old answer's file went, the dead letter's came");
    let listed = q.dead_letters().await.unwrap();
    assert_eq!(listed[0].last.as_ref().unwrap().body.len(), LISTED_ANSWER, "a listing gives the start");
    assert!(listed[0].call.body.is_empty());
    q.replay("a").await.unwrap();
    assert_eq!(files_in(&q), 1, "a replay starts over with the call's body only");
    let e = q.take(&fr("f"), u64::MAX).await.unwrap();
    assert_eq!(e.call.body.len(), 200_000);
    assert!(e.progress.result.is_none());
}

#[tokio::test]
async fn a_body_that_cannot_be_read_dead_letters_its_call() {
    let dir = tempfile::tempdir().unwrap();
    let q = EmbeddedQueue::open(&dir.path().join("q"), Limits::default()).unwrap();
    q.enqueue(big("a", "f", INLINE_MAX * 2, 1)).await.unwrap();
    for f in std::fs::read_dir(q.body_folder()).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    assert!(q.take(&fr("f"), u64::MAX).await.is_none());
    let status = q.status_now("a").unwrap();
    assert_eq!(status.state, "dead-lettered");
    assert!(status.error.unwrap().contains("could not be read"));
}

#[tokio::test]
async fn bodies_stored_inline_by_an_older_version_are_moved_out_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    {
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        let old =
            Stored { seq: 7, entry: Entry::new(big("old", "f", 100_000, 9)), bodies: Bodies::default() };
        tx.open_table(PENDING).unwrap().insert("old", serde_json::to_vec(&old).unwrap().as_slice()).unwrap();
        tx.commit().unwrap();
    }
    let q = EmbeddedQueue::open(&path, Limits::default()).unwrap();
    assert_eq!(files_in(&q), 1);
    assert!(q.lock().entries["old"].entry.call.body.is_empty());
    let e = q.take(&fr("f"), u64::MAX).await.unwrap();
    assert_eq!(&e.call.body[..], &vec![9; 100_000][..]);
    q.enqueue(call("new", "f")).await.unwrap();
    assert!(q.lock().entries["new"].seq > 7, "numbers go on from the file's");
}
