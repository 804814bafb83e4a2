//! Opening the queue's file: its tables made if new, the state rebuilt from
//! the rows (calls that were running when the process died are pending
//! again), rows of an older version migrated, and body files no call refers
//! to removed.

use super::*;

impl EmbeddedQueue {
    /// Opens (or creates) the queue file and its folder of bodies; pending
    /// calls are read back, bodies no call refers to are removed.
    pub fn open(path: &Path, limits: Limits) -> Result<EmbeddedQueue> {
        let files = BodyFiles { dir: path.with_extension("bodies") };
        std::fs::create_dir_all(&files.dir).map_err(|e| storage(format!("{}: {e}", files.dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&files.dir, std::fs::Permissions::from_mode(0o700)).map_err(storage)?;
        }
        let db = Database::builder().set_cache_size(CACHE_BYTES).create(path).map_err(storage)?;
        let mut state = State::default();
        let now = now_ms();
        {
            let tx = db.begin_write().map_err(storage)?;
            // Make the tables exist, so that reads below find them.
            tx.open_table(PENDING).map_err(storage)?;
            tx.open_table(DEAD).map_err(storage)?;
            tx.open_table(FINISHED).map_err(storage)?;
            tx.open_table(BLOBS).map_err(storage)?;
            tx.commit().map_err(storage)?;
        }
        let mut writes = Vec::new();
        let mut blob_rows = Vec::new();
        let (mut pending, mut dead) = (Vec::new(), Vec::new());
        {
            let tx = db.begin_read().map_err(storage)?;
            for item in tx.open_table(PENDING).map_err(storage)?.iter().map_err(storage)? {
                let (key, value) = item.map_err(storage)?;
                let stored: Stored = serde_json::from_slice(value.value()).map_err(storage)?;
                pending.push((key.value().to_owned(), stored));
            }
            for item in tx.open_table(DEAD).map_err(storage)?.iter().map_err(storage)? {
                let (key, value) = item.map_err(storage)?;
                let stored: StoredDead = serde_json::from_slice(value.value()).map_err(storage)?;
                dead.push((key.value().to_owned(), stored));
            }
            for item in tx.open_table(FINISHED).map_err(storage)?.iter().map_err(storage)? {
                let (key, value) = item.map_err(storage)?;
                let status: CallStatus = serde_json::from_slice(value.value()).map_err(storage)?;
                if status.updated_at + FINISHED_RETENTION_MS < now {
                    writes.push(Write::Delete(Table::Finished, key.value().to_owned()));
                } else {
                    state.finished.insert(key.value().to_owned(), status);
                }
            }
            for item in tx.open_table(BLOBS).map_err(storage)?.iter().map_err(storage)? {
                blob_rows.push(item.map_err(storage)?.0.value());
            }
        }
        let all_bodies = pending
            .iter()
            .flat_map(|(_, s)| s.bodies.all())
            .chain(dead.iter().flat_map(|(_, s)| s.bodies.all()));
        let seqs = pending.iter().map(|(_, s)| s.seq).chain(dead.iter().map(|(_, s)| s.seq));
        state.next_seq =
            all_bodies.map(|b| b.n).chain(seqs).chain(blob_rows.iter().copied()).max().unwrap_or(0);
        let io = |e: std::io::Error| storage(format!("moving a call's body out of its row: {e}"));
        pending.sort_by_key(|(_, s)| s.seq);
        for (id, mut s) in pending {
            let mut moved =
                migrate(&files, &mut state, &mut s.entry.call.body, &mut s.bodies.call, &mut writes)
                    .map_err(io)?;
            if let Some(result) = s.entry.progress.result.as_mut() {
                moved |= migrate(&files, &mut state, &mut result.body, &mut s.bodies.result, &mut writes)
                    .map_err(io)?;
            }
            if moved {
                writes.push(Write::Put(Table::Pending, id.clone(), encode(&s)?));
            }
            let size = s.entry.size() + blob_len(s.bodies.call) + blob_len(s.bodies.result);
            state.hold(&key_of(&s.entry), size);
            state.place(Slot { seq: s.seq, entry: s.entry, bodies: s.bodies, size }, now);
        }
        for (id, mut s) in dead {
            let mut moved =
                migrate(&files, &mut state, &mut s.letter.call.body, &mut s.bodies.call, &mut writes)
                    .map_err(io)?;
            if let Some(last) = s.letter.last.as_mut() {
                moved |= migrate(&files, &mut state, &mut last.body, &mut s.bodies.result, &mut writes)
                    .map_err(io)?;
            }
            if moved {
                writes.push(Write::Put(Table::Dead, id.clone(), encode(&s)?));
            }
            let size = s.letter.call.size()
                + s.letter.last.as_ref().map_or(0, crate::Outcome::size)
                + blob_len(s.bodies.call)
                + blob_len(s.bodies.result);
            state.hold(&s.letter.call.function_ref(), size);
            state.dead.insert(id, DeadSlot { seq: s.seq, letter: s.letter, bodies: s.bodies, size });
        }
        // What no call refers to (a crash between a body's file and its
        // call's commit) goes.
        let used: HashSet<(u64, bool)> = state
            .entries
            .values()
            .flat_map(|s| s.bodies.all())
            .chain(state.dead.values().flat_map(|s| s.bodies.all()))
            .map(|b| (b.n, b.file))
            .chain(writes.iter().filter_map(|w| match w {
                Write::PutBlob(n, _) => Some((*n, false)),
                _ => None,
            }))
            .collect();
        writes.extend(blob_rows.into_iter().filter(|n| !used.contains(&(*n, false))).map(Write::DeleteBlob));
        let listing = std::fs::read_dir(&files.dir).map_err(storage)?;
        for item in listing.flatten() {
            let keep = item
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| used.contains(&(n, true)));
            if !keep {
                let _ = std::fs::remove_file(item.path());
            }
        }
        if !writes.is_empty() {
            commit(&db, std::slice::from_ref(&writes)).map_err(storage)?;
        }
        if !state.entries.is_empty() {
            tracing::info!(
                pending = state.entries.len(),
                bytes = state.bytes,
                "asynchronous calls read back from the queue"
            );
        }
        let db = Arc::new(db);
        let (tx, rx) = std::sync::mpsc::channel::<Batch>();
        let writer_db = Arc::clone(&db);
        let thread = std::thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || write_loop(&writer_db, rx))
            .map_err(storage)?;
        Ok(EmbeddedQueue {
            writer: tx,
            thread: Some(thread),
            db,
            files,
            state: Mutex::new(state),
            changed: Notify::new(),
            limits,
        })
    }
}
