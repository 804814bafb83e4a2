//! The bundle store against real archives in temporary folders: links,
//! bombs, bounds, manifests that are links, folder images.

use super::*;

/// Pushes `bytes` as an uploaded archive (a file, as the gateway
/// leaves it).
fn put(store: &BundleStore, image: &str, bytes: Vec<u8>) -> Result<BundleInfo> {
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), bytes).unwrap();
    store.push(image, file.path())
}

fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        // Private modes, as an archive may have them.
        h.set_mode(if path.ends_with(".sh") { 0o700 } else { 0o600 });
        h.set_cksum();
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn image_references() {
    assert_eq!(ImageRef::parse("/srv/fn").unwrap(), ImageRef::Path("/srv/fn".into()));
    assert_eq!(ImageRef::parse("wc").unwrap(), ImageRef::Tag { name: "wc".into(), tag: "latest".into() });
    assert_eq!(
        ImageRef::parse("team/wc:1.2").unwrap(),
        ImageRef::Tag { name: "team/wc".into(), tag: "1.2".into() }
    );
    let hex = "a".repeat(64);
    assert_eq!(ImageRef::parse(&format!("wc@sha256:{hex}")).unwrap(), ImageRef::Digest(hex.clone()));
    assert_eq!(ImageRef::parse(&format!("sha256:{hex}")).unwrap(), ImageRef::Digest(hex));
    for bad in ["", "WC", "../x", "a//b", "wc:", "wc:bad tag", "sha256:xyz", "wc@md5:00"] {
        assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn push_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let store = BundleStore::open(dir.path().join("bundles")).unwrap();
    let a = archive(&[
        ("bundle.json", br#"{"env":{"fprocess":"cat"}}"#),
        ("lib/x.txt", b"x"),
        ("run.sh", b"cat"),
    ]);
    let info = put(&store, "cat:1", a.clone()).unwrap();
    assert_eq!(info.image, "cat:1");
    let path = store.resolve("cat:1").unwrap();
    assert_eq!(fs::read(path.join("lib/x.txt")).unwrap(), b"x");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!((mode(&path), mode(&path.join("lib")), mode(&path.join("lib/x.txt"))), (0o755, 0o755, 0o644));
    assert_eq!(mode(&path.join("run.sh")), 0o755);
    assert_eq!(Manifest::read(&path).unwrap().env["fprocess"], "cat");
    assert_eq!(store.resolve(&info.digest).unwrap(), path);
    assert!(store.resolve("cat:2").is_err());
    // Same content again: same blob; the index survives a reopen.
    put(&store, "cat:latest", a).unwrap();
    let reopened = BundleStore::open(dir.path().join("bundles")).unwrap();
    assert_eq!(reopened.resolve("cat").unwrap(), path);
    assert_eq!(reopened.list().len(), 2);
}

fn with_links(links: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "sub/file", &b"x"[..]).unwrap();
    for (path, target) in links {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, path, target).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn links_may_point_only_inside_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let store = BundleStore::open(dir.path().join("bundles")).unwrap();
    let ok = put(&store, "ok", with_links(&[("a", "sub/file"), ("sub/b", "../a"), ("c", "./sub")])).unwrap();
    let path = store.resolve(&ok.digest).unwrap();
    assert_eq!(fs::read(path.join("sub/b")).unwrap(), b"x");
    for (links, what) in [
        (vec![("passwd", "/etc/passwd")], "passwd: a link to /etc/passwd leaves the bundle"),
        (vec![("up", "../../state")], "up: a link to ../../state leaves the bundle"),
        (vec![("sub/up", "../..")], "a link to ../.. leaves"),
        // Each fine by its name; together out: `here/..` is the
        // bundle's parent.
        (vec![("here", "."), ("sub/x", "../here/../y")], "leaves the bundle"),
        (vec![("nothing", "sub/missing")], "points to nothing"),
    ] {
        let err = put(&store, "bad", with_links(&links)).unwrap_err().to_string();
        assert!(err.contains(what), "{links:?}: {err}");
    }
    assert_eq!(store.list().len(), 1, "none of them stored");
    let leftovers = fs::read_dir(dir.path().join("bundles/blobs")).unwrap().count();
    assert_eq!(leftovers, 1);
}

#[test]
fn folder_images_only_under_the_operators_roots_and_never_the_state_folder() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (images, other) = (dir.path().join("images"), dir.path().join("other"));
    for d in [&state.join("functions"), &images.join("fn"), &other] {
        fs::create_dir_all(d).unwrap();
    }
    let name = |p: &Path| p.display().to_string();
    let closed = BundleStore::open(state.join("bundles")).unwrap();
    let err = closed.resolve(&name(&images.join("fn"))).unwrap_err().to_string();
    assert!(err.contains("--image-root"), "{err}");
    let store = BundleStore::open(state.join("bundles"))
        .unwrap()
        .with_image_roots(&[images.clone(), dir.path().to_owned()], &state)
        .unwrap();
    assert_eq!(store.resolve(&name(&images.join("fn"))).unwrap(), images.join("fn").canonicalize().unwrap());
    assert!(store.resolve(&name(&other)).is_ok(), "under the second root");
    let outside = store.resolve("/etc").unwrap_err().to_string();
    assert!(outside.contains("not under a folder this gateway runs images from"), "{outside}");
    for within in [state.clone(), state.join("functions"), dir.path().to_owned()] {
        let err = store.resolve(&name(&within)).unwrap_err().to_string();
        assert!(err.contains("state folder"), "{within:?}: {err}");
    }
    // A link into the state folder is the state folder.
    std::os::unix::fs::symlink(&state, images.join("sneaky")).unwrap();
    let err = store.resolve(&name(&images.join("sneaky"))).unwrap_err().to_string();
    assert!(err.contains("state folder"), "{err}");
    let err = store.resolve(&name(&images.join("fn/../../state"))).unwrap_err().to_string();
    assert!(err.contains("state folder"), "{err}");
}

#[test]
fn a_manifest_that_is_a_link_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("secret.json"), br#"{"admin_password": "hunter2"}"#).unwrap();
    let bundle = dir.path().join("fn");
    fs::create_dir(&bundle).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.json"), bundle.join(MANIFEST)).unwrap();
    let err = Manifest::read(&bundle).unwrap_err().to_string();
    assert!(err.contains("is a link"), "{err}");
    assert!(!err.contains("admin_password"), "{err}");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn a_gzip_bomb_stops_at_the_unpacked_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = BundleLimits { max_unpacked: 8 << 20, max_store: 1 << 30 };
    let store = BundleStore::open(dir.path().join("bundles")).unwrap().with_limits(limits);
    let zeros = vec![0u8; 64 << 20];
    let bomb = gzip(&archive(&[("zeros", &zeros)]));
    assert!(bomb.len() < 200 << 10, "{} bytes", bomb.len());
    let err = put(&store, "bomb", bomb).unwrap_err();
    assert!(matches!(err, ProviderError::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("--bundle-max-unpacked"), "{err}");
    assert_eq!(fs::read_dir(dir.path().join("bundles/blobs")).unwrap().count(), 0, "nothing left");
    assert!(put(&store, "small", gzip(&archive(&[("f", &[1; 1000])]))).is_ok());
}

#[test]
fn the_store_is_bounded_and_makes_room_from_what_nothing_uses() {
    let dir = tempfile::tempdir().unwrap();
    let limits = BundleLimits { max_unpacked: 1 << 20, max_store: 2500 << 10 };
    let store = BundleStore::open(dir.path().join("bundles")).unwrap().with_limits(limits);
    let mb = |b: u8| archive(&[("f", &vec![b; 1 << 20])]);
    let first = put(&store, "app:1", mb(1)).unwrap();
    assert_eq!(first.replaced, None);
    // The tag moves on; a function still runs the first.
    store.resolve_for("app.openfaas-fn", "app:1").unwrap();
    let second = put(&store, "app:1", mb(2)).unwrap();
    assert_eq!(second.replaced.as_deref(), Some(first.digest.as_str()), "the answer says what it replaced");
    assert_eq!(fs::read(store.resolve("app:1").unwrap().join("f")).unwrap()[0], 2);
    // Full: the first is still run by a function, the second tagged.
    let err = put(&store, "app:1", mb(3)).unwrap_err();
    assert!(
        matches!(err, ProviderError::TooLarge(_)) && err.to_string().contains("--bundle-store-max"),
        "{err}"
    );
    assert!(store.resolve(&first.digest).is_ok(), "what runs is kept");
    // Once the function is gone (or deployed again), its old one goes.
    store.release("app.openfaas-fn");
    let third = put(&store, "app:1", mb(3)).unwrap();
    assert_eq!(third.replaced.as_deref(), Some(second.digest.as_str()));
    assert!(store.resolve(&first.digest).is_err(), "pruned");
    assert_eq!(store.stored_bytes(), 2 << 20);
    // The sizes are read back at start.
    let reopened = BundleStore::open(dir.path().join("bundles")).unwrap();
    assert_eq!(reopened.stored_bytes(), 2 << 20);
}

#[test]
fn refuses_bad_archives() {
    let dir = tempfile::tempdir().unwrap();
    let store = BundleStore::open(dir.path().join("bundles")).unwrap();
    assert!(put(&store, "x", b"not a tar at all, just text".to_vec()).is_err());
    assert!(put(&store, "x", archive(&[])).is_err());
    // A path that climbs out, written by hand (tar::Builder refuses to).
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..10].copy_from_slice(b"../evil.sh");
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(b"x");
    raw.resize(512 * 2, 0);
    raw.extend_from_slice(&[0; 1024]);
    let err = put(&store, "x", raw).unwrap_err();
    assert!(err.to_string().contains("leaves the bundle"), "{err}");
    assert!(!dir.path().join("bundles/blobs/evil.sh").exists());
    assert!(store.list().is_empty());
}
