//! A function folder packed as a bundle (a gzipped tar archive), the form in
//! which bundles travel to a gateway.

use std::path::Path;

use anyhow::Context;
use bytes::Bytes;

/// Packs the contents of `dir` (not the folder itself); symbolic links stay
/// links.
pub fn pack(dir: &Path) -> anyhow::Result<Bytes> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    // Plain entries only: a file that looks sparse (a linker's output) is
    // written whole, as every reader takes it.
    tar.sparse(false);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_dir_all(".", dir).with_context(|| format!("packing {}", dir.display()))?;
    let gz = tar.into_inner().context("finishing the archive")?;
    Ok(Bytes::from(gz.finish().context("compressing the archive")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bundle.json"), "{}").unwrap();
        std::fs::create_dir(dir.path().join("lib")).unwrap();
        std::fs::write(dir.path().join("lib/a.txt"), "a").unwrap();
        let bytes = pack(dir.path()).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        names.sort();
        assert!(
            names.contains(&"bundle.json".to_string()) || names.contains(&"./bundle.json".to_string()),
            "{names:?}"
        );
        assert_eq!(pack(dir.path()).unwrap(), bytes, "deterministic: same folder, same digest");
    }
}
