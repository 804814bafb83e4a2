//! Where bodies are kept: up to [`INLINE_MAX`](super::INLINE_MAX) bytes as
//! rows of the redb file (in the same transaction as their call), larger
//! ones as files of their own in `queue.bodies/`, fsync'd before the call
//! that refers to them is committed.

use super::writer::Write;
use super::*;

/// Where a body is: its number, length, and whether it is a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Blob {
    pub(super) n: u64,
    pub(super) len: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) file: bool,
}

/// The bodies of a stored call: the call's, and the answer's it keeps.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(super) struct Bodies {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) call: Option<Blob>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) result: Option<Blob>,
}

impl Bodies {
    pub(super) fn all(&self) -> impl Iterator<Item = Blob> {
        self.call.into_iter().chain(self.result)
    }
}

/// The folder of bodies too large for the redb file: one file each, named
/// by its number.
#[derive(Clone)]
pub(super) struct BodyFiles {
    pub(super) dir: PathBuf,
}

impl BodyFiles {
    pub(super) fn path(&self, n: u64) -> PathBuf {
        self.dir.join(n.to_string())
    }

    /// Writes body `n` durably: its bytes and its name are on disk.
    pub(super) fn write(&self, n: u64, bytes: &[u8]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(self.path(n))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// At most `max` bytes of body `n`, `len` long.
    pub(super) fn read(&self, n: u64, len: u64, max: usize) -> std::io::Result<Bytes> {
        // Sized once: a growing buffer would double past the body.
        let mut bytes = Vec::with_capacity(len.min(max as u64) as usize);
        std::fs::File::open(self.path(n))?.take(max as u64).read_to_end(&mut bytes)?;
        Ok(Bytes::from(bytes))
    }

    pub(super) fn remove(&self, blobs: impl IntoIterator<Item = Blob>) {
        for b in blobs.into_iter().filter(|b| b.file) {
            if let Err(e) = std::fs::remove_file(self.path(b.n))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, file = %self.path(b.n).display(), "could not remove a call's body");
            }
        }
    }
}

/// Reads blobs back: from the redb file or from their files.
pub(super) fn read_blobs(
    db: &Database,
    files: &BodyFiles,
    blobs: &[(Blob, usize)],
) -> std::result::Result<Vec<Bytes>, String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let table = tx.open_table(BLOBS).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(blobs.len());
    for &(blob, max) in blobs {
        let bytes = if blob.file {
            files.read(blob.n, blob.len, max).map_err(|e| format!("{}: {e}", files.path(blob.n).display()))?
        } else {
            let value = table
                .get(blob.n)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("body {} is missing", blob.n))?;
            let v = value.value();
            Bytes::copy_from_slice(&v[..v.len().min(max)])
        };
        if bytes.len() as u64 != blob.len && bytes.len() < max {
            return Err(format!("body {} has {} bytes, not {}", blob.n, bytes.len(), blob.len));
        }
        out.push(bytes);
    }
    Ok(out)
}

/// Takes `body` out of a call or answer for storing: nothing if it is
/// empty, else a new blob numbered `n`, a row of `writes` or a file
/// written now.
pub(super) fn stash(
    files: &BodyFiles,
    n: u64,
    body: Bytes,
    writes: &mut Vec<Write>,
) -> std::io::Result<Option<Blob>> {
    if body.is_empty() {
        return Ok(None);
    }
    let len = body.len() as u64;
    if body.len() > INLINE_MAX {
        files.write(n, &body)?;
        return Ok(Some(Blob { n, len, file: true }));
    }
    writes.push(Write::PutBlob(n, body));
    Ok(Some(Blob { n, len, file: false }))
}

/// The rows of blobs that are rows, for removal in the same transaction
/// as what referred to them.
pub(super) fn delete_rows(blobs: impl IntoIterator<Item = Blob>, writes: &mut Vec<Write>) {
    writes.extend(blobs.into_iter().filter(|b| !b.file).map(|b| Write::DeleteBlob(b.n)));
}

pub(super) fn blob_len(b: Option<Blob>) -> u64 {
    b.map_or(0, |b| b.len)
}

/// A stored call's body moved out of its row (files written before this
/// version): `true` if there was one.
pub(super) fn migrate(
    files: &BodyFiles,
    state: &mut State,
    body: &mut Bytes,
    blob: &mut Option<Blob>,
    writes: &mut Vec<Write>,
) -> std::io::Result<bool> {
    if blob.is_some() || body.is_empty() {
        return Ok(false);
    }
    let n = state.next();
    *blob = stash(files, n, std::mem::take(body), writes)?;
    Ok(true)
}
