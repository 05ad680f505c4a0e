//! The Hugging Face source against a loopback hub (`tests/support/hub_server.py`):
//! pinning, listing with sizes and hashes, patterns, errors, tokens, verified
//! downloads through the LFS redirect, and `huggingface_hub` itself against
//! the same server (so the server is hub-shaped, not just imgbake-shaped).

mod support;

use imgbake::image::digest::Digest;
use imgbake::weights::hf::{self, HfClient};
use imgbake::weights::{Listing, RemoteFile, Secret, WeightsError};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::data::random_bytes;
use support::hub::{add_listed_path, make_repo, TestHub};
use support::tools::{run_with_timeout, skipping_tool_tests, SKIP_TOOL_TESTS_ENV};

const REPO: &str = "org/name";
const URI: &str = "hf://org/name@main";
const MIB: usize = 1024 * 1024;
const TOKEN: &str = "hf_testTOKENvalue123";
const CREDENTIAL: &str = "IMGBAKE_TEST_HF_CREDENTIAL";

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The git blob sha1, from git itself (an implementation independent of the server's).
fn git_blob_sha1(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .args(["hash-object", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("git is installed");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn sdxl_like_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("model_index.json", b"{\"_class_name\": \"Pipeline\"}\n".to_vec()),
        ("unet/config.json", b"{\"in_channels\": 4}\n".to_vec()),
        ("unet/diffusion_pytorch_model.safetensors", random_bytes(3 * MIB, 1)),
        ("text_encoder/config.json", b"{\"hidden_size\": 768}\n".to_vec()),
        ("text_encoder/model.onnx", random_bytes(2000, 2)),
        ("README.md", b"# a model\n".to_vec()),
    ]
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| s.to_string()).collect()
}

fn client(hub: &TestHub) -> HfClient {
    HfClient::new(Some(hub.endpoint()), None)
}

fn list(hub: &TestHub, revision: &str, allow: &[&str], ignore: &[&str]) -> Result<Listing, WeightsError> {
    client(hub).list(REPO, revision, &strings(allow), &strings(ignore), URI)
}

fn paths(listing: &Listing) -> Vec<&str> {
    listing.files.iter().map(|f| f.path.as_str()).collect()
}

fn file<'a>(listing: &'a Listing, path: &str) -> &'a RemoteFile {
    listing.files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{path} not in {listing:?}"))
}

#[test]
fn a_branch_is_pinned_to_its_commit_with_sizes_and_hashes() {
    let root = tempfile::tempdir().unwrap();
    let files = sdxl_like_files();
    let commit = make_repo(root.path(), REPO, "main", &files);
    let hub = TestHub::start(root.path(), None);

    let listing = list(&hub, "main", &[], &[]).unwrap();

    assert_eq!(listing.revision.as_deref(), Some(commit.as_str()));
    assert_eq!(listing.uri, URI);
    let mut expected: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
    expected.sort();
    assert_eq!(paths(&listing), expected, "all files, sorted by path");
    for (path, bytes) in &files {
        let remote = file(&listing, path);
        assert_eq!(remote.size, bytes.len() as u64, "{path}");
        assert_eq!(remote.url, format!("{}/{REPO}/resolve/{commit}/{path}", hub.endpoint()), "pinned url");
        if bytes.len() >= MIB {
            let want: Digest = format!("sha256:{}", sha256_hex(bytes)).parse().unwrap();
            assert_eq!(remote.sha256.as_ref(), Some(&want), "{path}: LFS etag is the sha256");
            assert_eq!(remote.etag.as_deref(), Some(sha256_hex(bytes).as_str()));
        } else {
            assert_eq!(remote.sha256, None, "{path}: a git blob sha1 is not a sha256");
            assert_eq!(remote.etag.as_deref(), Some(git_blob_sha1(bytes).as_str()), "{path}");
        }
    }
    assert_eq!(listing.total_size(), files.iter().map(|(_, b)| b.len() as u64).sum::<u64>());

    // Metadata came from the 302 itself: one HEAD per file, nothing read from the CDN.
    let stats = hub.stats();
    let requests = stats["requests"].as_object().unwrap();
    let heads = requests.keys().filter(|k| k.starts_with(&format!("HEAD /{REPO}/resolve/{commit}/"))).count();
    assert_eq!(heads, files.len(), "{stats}");
    assert!(!requests.keys().any(|k| k.contains("/cdn/")), "listing must not touch the CDN: {stats}");

    // The commit as revision gives the same listing (and is still checked with the API).
    let by_commit = list(&hub, &commit, &[], &[]).unwrap();
    assert_eq!(by_commit, listing);
    assert_eq!(hub.request_count(&format!("GET /api/models/{REPO}/revision/{commit}")), 1);
}

#[test]
fn a_revision_with_slashes_is_url_encoded_like_huggingface_hub() {
    let root = tempfile::tempdir().unwrap();
    let commit = make_repo(root.path(), REPO, "refs/pr/1", &[("config.json", b"{}".to_vec())]);
    let hub = TestHub::start(root.path(), None);

    let listing = list(&hub, "refs/pr/1", &[], &[]).unwrap();

    assert_eq!(listing.revision, Some(commit));
    assert_eq!(hub.request_count(&format!("GET /api/models/{REPO}/revision/refs%2Fpr%2F1")), 1, "{}", hub.stats());
}

#[test]
fn allow_and_ignore_patterns_select_files() {
    let root = tempfile::tempdir().unwrap();
    make_repo(root.path(), REPO, "main", &sdxl_like_files());
    let hub = TestHub::start(root.path(), None);

    let json = list(&hub, "main", &["*.json"], &[]).unwrap();
    assert_eq!(paths(&json), ["model_index.json", "text_encoder/config.json", "unet/config.json"]);

    let unet = list(&hub, "main", &["unet/"], &[]).unwrap();
    assert_eq!(paths(&unet), ["unet/config.json", "unet/diffusion_pytorch_model.safetensors"]);

    let no_onnx_no_docs = list(&hub, "main", &[], &["*.onnx", "*.md"]).unwrap();
    assert_eq!(
        paths(&no_onnx_no_docs),
        [
            "model_index.json",
            "text_encoder/config.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors"
        ]
    );

    let both = list(&hub, "main", &["unet/", "*.json"], &["unet/config.json"]).unwrap();
    assert_eq!(
        paths(&both),
        ["model_index.json", "text_encoder/config.json", "unet/diffusion_pytorch_model.safetensors"]
    );
}

#[test]
fn patterns_that_match_nothing_are_an_error_naming_them() {
    let root = tempfile::tempdir().unwrap();
    make_repo(root.path(), REPO, "main", &sdxl_like_files());
    let hub = TestHub::start(root.path(), None);

    let error = list(&hub, "main", &["*.fp16.safetensors"], &["*.json"]).unwrap_err();

    assert!(matches!(error, WeightsError::Empty { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("*.fp16.safetensors") && message.contains("*.json"), "{message}");
    assert!(message.contains(URI), "{message}");
}

#[test]
fn a_missing_revision_or_repo_is_named() {
    let root = tempfile::tempdir().unwrap();
    make_repo(root.path(), REPO, "main", &sdxl_like_files());
    let hub = TestHub::start(root.path(), None);

    let error = list(&hub, "no-such-branch", &[], &[]).unwrap_err();
    assert!(
        matches!(&error, WeightsError::RevisionNotFound { revision, .. } if revision == "no-such-branch"),
        "{error:?}"
    );
    let error = list(&hub, &"0".repeat(40), &[], &[]).unwrap_err();
    assert!(matches!(error, WeightsError::RevisionNotFound { .. }), "{error:?}");

    let error = HfClient::new(Some(hub.endpoint()), None)
        .list("org/missing", "main", &[], &[], "hf://org/missing")
        .unwrap_err();
    assert!(matches!(error, WeightsError::NotFound { .. }), "{error:?}");
}

#[test]
fn a_listed_path_that_leaves_the_mount_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let commit = make_repo(root.path(), REPO, "main", &sdxl_like_files());
    add_listed_path(root.path(), REPO, &commit, "../escape");
    let hub = TestHub::start(root.path(), None);

    // Even when the patterns would not select it: such a listing is not trusted.
    let error = list(&hub, "main", &["*.json"], &[]).unwrap_err();

    assert!(matches!(&error, WeightsError::UnsafePath { path, .. } if path == "../escape"), "{error:?}");
}

#[test]
fn a_protected_repo_needs_the_token_and_errors_name_the_credential_not_the_value() {
    let root = tempfile::tempdir().unwrap();
    let files = sdxl_like_files();
    make_repo(root.path(), REPO, "main", &files);
    let hub = TestHub::start(root.path(), Some(TOKEN));

    for token in [None, Some("hf_wrongWRONGwrong")] {
        let client = HfClient::new(Some(hub.endpoint()), token.map(|t| Secret::new(t.to_string())))
            .with_credential_name(CREDENTIAL);
        let error = client.list(REPO, "main", &[], &[], URI).unwrap_err();
        assert!(matches!(error, WeightsError::Unauthorized { status: 401, .. }), "{error:?}");
        let shown = format!("{error} {error:?} {client:?}");
        assert!(shown.contains(CREDENTIAL), "{shown}");
        assert!(!shown.contains(TOKEN) && !shown.contains("hf_wrongWRONGwrong"), "a token leaked: {shown}");
    }

    let client =
        HfClient::new(Some(hub.endpoint()), Some(Secret::new(TOKEN.to_string()))).with_credential_name(CREDENTIAL);
    let listing = client.list(REPO, "main", &[], &[], URI).unwrap();
    assert_eq!(listing.files.len(), files.len());
    assert!(!format!("{client:?}").contains(TOKEN));

    // Downloads work too, and the token never reaches the CDN (another origin).
    let dest = tempfile::tempdir().unwrap();
    for remote in &listing.files {
        client.download_to(remote, &dest.path().join(remote.path.replace('/', "_"))).unwrap();
    }
    let stats = hub.stats();
    assert_eq!(stats["cdn_authorization"], 0, "the token was sent to the CDN: {stats}");
    let cdn_gets = stats["requests"].as_object().unwrap().keys().filter(|k| k.starts_with("GET /cdn/")).count();
    assert_eq!(cdn_gets, 1, "the 3 MiB file went through the CDN: {stats}");

    // Downloading with no token is refused with the credential's name.
    let anonymous = HfClient::new(Some(hub.endpoint()), None).with_credential_name(CREDENTIAL);
    let small = file(&listing, "model_index.json");
    let error = anonymous.download_to(small, &dest.path().join("anonymous")).unwrap_err();
    assert!(matches!(error, WeightsError::Unauthorized { .. }) && error.to_string().contains(CREDENTIAL), "{error:?}");
    assert!(!dest.path().join("anonymous").exists() && !dest.path().join("anonymous.partial").exists());
}

#[test]
fn token_for_prefers_the_entry_credential() {
    // No set_var here (other tests' threads read the environment): the entry's
    // "credential" is a variable that is always set, and one that never is.
    let path = std::env::var("PATH").unwrap();
    assert_eq!(hf::token_for(Some("PATH")).map(|s| s.expose().to_string()), Some(path));
    let fallback = Secret::from_env(&["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]);
    assert_eq!(
        hf::token_for(Some("IMGBAKE_TEST_NEVER_SET")),
        fallback,
        "unset → HF_TOKEN, then HUGGING_FACE_HUB_TOKEN"
    );
    assert_eq!(hf::token_for(None), fallback);
    assert_eq!(hf::credential_name(Some("MY_HF")), "MY_HF");
    assert_eq!(hf::credential_name(None), "HF_TOKEN");
}

#[test]
fn download_to_streams_the_exact_bytes_through_the_lfs_redirect() {
    let root = tempfile::tempdir().unwrap();
    let files = sdxl_like_files();
    make_repo(root.path(), REPO, "main", &files);
    let hub = TestHub::start(root.path(), None);
    let listing = list(&hub, "main", &[], &[]).unwrap();
    let client = client(&hub);
    let dest_dir = tempfile::tempdir().unwrap();

    for (path, bytes) in &files {
        let dest = dest_dir.path().join("weights").join(path);
        let digest = client.download_to(file(&listing, path), &dest).unwrap();
        assert_eq!(digest.hex(), sha256_hex(bytes), "{path}");
        assert!(std::fs::read(&dest).unwrap() == *bytes, "{path}: bytes differ");
        assert!(!Path::new(&format!("{}.partial", dest.display())).exists());
    }
    let big = "unet/diffusion_pytorch_model.safetensors";
    let sha = sha256_hex(&files.iter().find(|(p, _)| *p == big).unwrap().1);
    assert_eq!(hub.request_count(&format!("GET /cdn/{sha}")), 1, "{}", hub.stats());

    // `open` is a plain stream of the same bytes.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut client.open(file(&listing, big)).unwrap(), &mut bytes).unwrap();
    assert_eq!(sha256_hex(&bytes), sha);
}

#[test]
fn a_corrupted_byte_from_the_cdn_fails_the_download_and_leaves_no_file() {
    let root = tempfile::tempdir().unwrap();
    let files = sdxl_like_files();
    make_repo(root.path(), REPO, "main", &files);
    let hub = TestHub::start(root.path(), None);
    let listing = list(&hub, "main", &["unet/*.safetensors"], &[]).unwrap();
    let remote = &listing.files[0];
    hub.corrupt_blob(remote.sha256.as_ref().unwrap().hex());
    let dest_dir = tempfile::tempdir().unwrap();
    let dest = dest_dir.path().join("model.safetensors");

    let error = client(&hub).download_to(remote, &dest).unwrap_err();

    assert!(matches!(error, WeightsError::Protocol { .. }), "{error:?}");
    assert!(error.to_string().contains(remote.sha256.as_ref().unwrap().hex()), "{error}");
    assert!(!dest.exists(), "a bad file was left at the destination");
    assert_eq!(std::fs::read_dir(dest_dir.path()).unwrap().count(), 0, "nothing left behind");

    // A file that changed size since the listing fails the same way.
    let mut short = remote.clone();
    short.size -= 1;
    short.sha256 = None;
    let error = client(&hub).download_to(&short, &dest).unwrap_err();
    assert!(error.to_string().contains("bytes"), "{error}");
    assert_eq!(std::fs::read_dir(dest_dir.path()).unwrap().count(), 0);
}

#[test]
fn server_errors_are_retried_then_reported() {
    let root = tempfile::tempdir().unwrap();
    make_repo(root.path(), REPO, "main", &[("config.json", b"{}".to_vec())]);
    let hub = TestHub::start(root.path(), None);

    hub.fail_next(2);
    let listing = list(&hub, "main", &[], &[]).unwrap();
    assert_eq!(listing.files.len(), 1);

    hub.fail_next(100);
    let error = list(&hub, "main", &[], &[]).unwrap_err();
    assert!(matches!(error, WeightsError::Http { .. }), "{error:?}");
    let attempts = hub.request_count(&format!("GET /api/models/{REPO}/revision/main"));
    assert_eq!(attempts, 1 + 2 + 4, "1 ok + 2 retried + 4 attempts: {}", hub.stats());
}

/// `huggingface_hub.snapshot_download` against the same server: it must
/// succeed and make the blobs our listing predicts (named by our etags).
#[test]
fn huggingface_hub_downloads_from_the_test_hub() {
    if skipping_tool_tests() {
        eprintln!("skipping: {SKIP_TOOL_TESTS_ENV}=1 (needs the Python package huggingface_hub)");
        return;
    }
    let probe = Command::new("python3").args(["-c", "import huggingface_hub"]).output().expect("python3 runs");
    assert!(
        probe.status.success(),
        "the Python package `huggingface_hub` is missing (pip install huggingface_hub), or set {SKIP_TOOL_TESTS_ENV}=1: {}",
        String::from_utf8_lossy(&probe.stderr)
    );

    let root = tempfile::tempdir().unwrap();
    let files = sdxl_like_files();
    let commit = make_repo(root.path(), REPO, "main", &files);
    let hub = TestHub::start(root.path(), Some(TOKEN));
    let listing = HfClient::new(Some(hub.endpoint()), Some(Secret::new(TOKEN.to_string())))
        .list(REPO, "main", &[], &[], URI)
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");

    let output = run_with_timeout(
        Command::new("python3")
            .args([
                "-c",
                "import sys; from huggingface_hub import snapshot_download; \
                 print(snapshot_download(sys.argv[1], revision='main', cache_dir=sys.argv[2]))",
                REPO,
            ])
            .arg(&cache)
            .env("HF_ENDPOINT", hub.endpoint())
            .env("HF_TOKEN", TOKEN)
            .env("HF_HOME", home.path())
            .env("HF_HUB_DISABLE_TELEMETRY", "1")
            .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            .env_remove("HUGGING_FACE_HUB_TOKEN")
            .env_remove("HF_HUB_OFFLINE"),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "snapshot_download failed:\n{stderr}");
    let snapshot = String::from_utf8_lossy(&output.stdout).trim().lines().last().unwrap_or_default().to_string();
    let model = cache.join("models--org--name");
    assert_eq!(Path::new(&snapshot), model.join("snapshots").join(&commit), "{stderr}");
    assert_eq!(std::fs::read_to_string(model.join("refs/main")).unwrap(), commit);
    for (path, bytes) in &files {
        assert!(std::fs::read(Path::new(&snapshot).join(path)).unwrap() == *bytes, "{path}");
        let etag = file(&listing, path).etag.clone().unwrap();
        let blob = model.join("blobs").join(&etag);
        assert!(blob.is_file(), "huggingface_hub named the blob of {path} differently than our etag {etag}");
    }
    assert_eq!(hub.stats()["cdn_authorization"], 0, "huggingface_hub sent the token to the CDN");
}
