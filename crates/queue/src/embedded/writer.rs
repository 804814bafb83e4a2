//! The one writer thread: every change waiting when it starts a
//! transaction goes into it (group commit), one fsync for them all.

use super::*;

#[derive(Clone, Copy)]
pub(super) enum Table {
    Pending = 0,
    Dead = 1,
    Finished = 2,
}

pub(super) enum Write {
    Put(Table, String, Vec<u8>),
    Delete(Table, String),
    PutBlob(u64, Bytes),
    DeleteBlob(u64),
}

impl Write {
    pub(super) fn bytes(&self) -> usize {
        match self {
            Write::Put(_, k, v) => k.len() + v.len(),
            Write::PutBlob(_, b) => b.len(),
            Write::Delete(..) | Write::DeleteBlob(_) => 64,
        }
    }
}

pub(super) type Batch = (Vec<Write>, oneshot::Sender<std::result::Result<(), String>>);

/// One transaction of everything in `batches`.
pub(super) fn commit(db: &Database, batches: &[Vec<Write>]) -> std::result::Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let mut tables = [tx.open_table(PENDING)?, tx.open_table(DEAD)?, tx.open_table(FINISHED)?];
        let mut blobs = tx.open_table(BLOBS)?;
        for w in batches.iter().flatten() {
            match w {
                Write::Put(t, k, v) => {
                    tables[*t as usize].insert(k.as_str(), v.as_slice())?;
                }
                Write::Delete(t, k) => {
                    tables[*t as usize].remove(k.as_str())?;
                }
                Write::PutBlob(n, bytes) => {
                    blobs.insert(*n, bytes.as_ref())?;
                }
                Write::DeleteBlob(n) => {
                    blobs.remove(*n)?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// The writer thread: batches what is waiting (up to [`BATCH_BYTES`]) into
/// one transaction.
pub(super) fn write_loop(db: &Database, rx: std::sync::mpsc::Receiver<Batch>) {
    while let Ok(first) = rx.recv() {
        let mut bytes: usize = first.0.iter().map(Write::bytes).sum();
        let mut batches = vec![first];
        while bytes < BATCH_BYTES && batches.len() < 4096 {
            let Ok(more) = rx.try_recv() else { break };
            bytes += more.0.iter().map(Write::bytes).sum::<usize>();
            batches.push(more);
        }
        let (writes, replies): (Vec<_>, Vec<_>) = batches.into_iter().unzip();
        let result = commit(db, &writes).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, "the queue could not write");
        }
        for reply in replies {
            let _ = reply.send(result.clone());
        }
    }
}
