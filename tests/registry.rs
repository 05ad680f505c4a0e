//! The registry client against a real Debian `docker-registry` on loopback:
//! push, re-push (HEAD only), pull, skopeo, errors, memory on a big blob,
//! platform selection and authentication.

mod support;

use imgbake::image::digest::Digest;
use imgbake::registry::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use imgbake::registry::{
    BlobPushOutcome, BlobSource, Credentials, ImageToPush, ProgressMode, Reference, RegistryClient,
    RegistryClientOptions, RegistryError,
};
use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::data::peak_rss_kib;
use support::registry::{fake_server, free_port, request_header, sha256, small_image, TestRegistry};

fn options() -> RegistryClientOptions {
    RegistryClientOptions {
        insecure_registries: vec!["127.0.0.1:*".into()],
        ambient_credentials: false,
        progress: ProgressMode::Lines,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        max_retries: 2,
        ..Default::default()
    }
}

fn client() -> RegistryClient {
    RegistryClient::new(options()).unwrap()
}

fn reference(text: &str) -> Reference {
    text.parse().unwrap()
}

#[test]
fn push_repush_pull_and_skopeo_inspect() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let image = small_image(&work.path().join("blobs"), "hello from imgbake\n");
    let target = reference(&format!("{}/team/app:v1", registry.host()));
    let client = client();

    let report = client.push_image(&image, &target).unwrap();
    assert_eq!(report.manifest_digest, sha256(&image.manifest));
    assert!(report.blobs.iter().all(|(_, outcome)| *outcome == BlobPushOutcome::Uploaded));
    let after_first = client.stats();
    assert_eq!(after_first.blobs_uploaded, 2);
    assert_eq!(after_first.blob_checks, 2);

    // Re-push: every blob is only HEAD-checked, nothing uploaded.
    let again = client.push_image(&image, &target).unwrap();
    let after_second = client.stats();
    assert_eq!(after_second.blobs_uploaded, after_first.blobs_uploaded);
    assert_eq!(after_second.bytes_uploaded, after_first.bytes_uploaded);
    assert_eq!(after_second.blob_checks, after_first.blob_checks + 2);
    assert!(again.blobs.iter().all(|(_, outcome)| *outcome == BlobPushOutcome::AlreadyPresent));

    // Another repository on the same registry mounts instead of uploading.
    let mounted = ImageToPush { mount_from: Some("team/app".into()), ..image.clone() };
    let other = reference(&format!("{}/team/other:v1", registry.host()));
    let report = client.push_image(&mounted, &other).unwrap();
    assert!(report.blobs.iter().all(|(_, outcome)| *outcome == BlobPushOutcome::Mounted));
    assert_eq!(client.stats().blobs_uploaded, after_first.blobs_uploaded);

    // Pull it back into a fresh blob directory: the same bytes, verified.
    let pulled_dir = work.path().join("pulled");
    let pulled = client.pull_image(&target, "linux", "amd64", &pulled_dir).unwrap();
    assert_eq!(pulled.pinned_digest, report.manifest_digest);
    assert_eq!(pulled.manifest.bytes, image.manifest);
    assert_eq!(pulled.manifest.media_type, OCI_MANIFEST);
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        let copy = imgbake::registry::blob_path(&pulled_dir, &blob.digest);
        assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&blob.path).unwrap());
    }
    // Pinned by digest, the manifest is checked against it.
    let by_digest = client.fetch_manifest(&target.with_digest(report.manifest_digest.clone())).unwrap();
    assert_eq!(by_digest.digest, report.manifest_digest);

    let output = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{}/team/app:v1", registry.host()))
        .output()
        .expect("skopeo is installed");
    assert!(output.status.success(), "skopeo inspect failed: {}", String::from_utf8_lossy(&output.stderr));
    let inspected: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(inspected["Digest"], report.manifest_digest.to_string());
    assert_eq!(inspected["Os"], "linux");
    assert_eq!(inspected["Architecture"], "amd64");
    assert_eq!(inspected["Layers"][0], image.layers[0].digest.to_string());
}

#[test]
fn missing_tag_is_manifest_unknown() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let client = client();
    client
        .push_image(
            &small_image(&work.path().join("blobs"), "here\n"),
            &reference(&format!("{}/nobody/here:v1", registry.host())),
        )
        .unwrap();
    let missing = reference(&format!("{}/nobody/here:v9", registry.host()));
    let error = client.fetch_manifest(&missing).unwrap_err();
    assert!(
        matches!(&error, RegistryError::ManifestUnknown { reference } if reference == &missing.to_string()),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert_eq!(error.to_string(), format!("manifest {missing} not found"));
}

#[test]
fn closed_port_is_connection_refused_after_bounded_retries() {
    let host = format!("127.0.0.1:{}", free_port());
    let client = client();
    let error = client.fetch_manifest(&reference(&format!("{host}/app:v1"))).unwrap_err();
    assert!(matches!(&error, RegistryError::ConnectionRefused { registry, .. } if *registry == host), "{error:?}");
    assert!(error.is_retryable());
    assert_eq!(error.to_string(), format!("registry {host} refused the connection"));
    assert_eq!(client.stats().retries, 2);
    assert_eq!(
        error.hint().unwrap(),
        format!("nothing listens on {host}: start the registry, or check the port in the image reference")
    );
}

/// 503 and 429 are retried with backoff; the request then succeeds.
#[test]
fn server_errors_are_retried_then_succeed() {
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = answered.clone();
    let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let (host, _server) = fake_server(move |_request| match count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
        0 => ("503 Service Unavailable", String::new(), Vec::new()),
        1 => ("429 Too Many Requests", "Retry-After: 0\r\n".into(), Vec::new()),
        _ => ("200 OK", String::new(), manifest.to_vec()),
    });
    let client = client();
    let fetched = client.fetch_manifest(&reference(&format!("{host}/flaky/repo:v1"))).unwrap();
    // No Content-Type: the media type comes from the document's shape.
    assert_eq!(fetched.media_type, OCI_MANIFEST);
    assert_eq!(client.stats().retries, 2);
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 3);

    // With the retries used up, the 503 is reported, and called retryable.
    let always = fake_server(|_request| ("503 Service Unavailable", String::new(), Vec::new()));
    let error = client.fetch_manifest(&reference(&format!("{}/flaky/repo:v1", always.0))).unwrap_err();
    assert!(matches!(error, RegistryError::UnexpectedStatus { status: 503, .. }), "{error:?}");
    assert!(error.is_retryable());
}

#[test]
fn big_blob_streams_without_buffering() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("big.bin");
    let mut hasher = Sha256::new();
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut rng = fastrand::Rng::with_seed(7);
        let mut chunk = vec![0u8; 1024 * 1024];
        for _ in 0..SIZE / chunk.len() as u64 {
            rng.fill(&mut chunk);
            hasher.update(&chunk);
            file.write_all(&chunk).unwrap();
        }
    }
    let blob = BlobSource { digest: Digest::from_sha256_bytes(&hasher.finalize()), size: SIZE, path };
    let image = reference(&format!("{}/big/blob:v1", registry.host()));
    let client = client();

    // Reset the peak to the current RSS (Linux: "5" → clear VmHWM), so that
    // the growth measured is this test's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss_kib();
    let started = std::time::Instant::now();
    let outcome = client.push_blob_from_file(&image, &blob, None).unwrap();
    let pushed_in = started.elapsed();
    assert_eq!(outcome, BlobPushOutcome::Uploaded);
    let dest = work.path().join("copy").join("big.bin");
    let started = std::time::Instant::now();
    let size = client.fetch_blob_to_file(&image, &blob.digest, &dest).unwrap();
    let pulled_in = started.elapsed();
    let growth_kib = peak_rss_kib().saturating_sub(before);
    eprintln!("64 MiB blob: push {pushed_in:?}, pull {pulled_in:?}, peak RSS growth {} KiB", growth_kib);
    assert_eq!(size, SIZE);
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), SIZE);
    assert!(growth_kib < SIZE / 1024 / 4, "peak RSS grew by {growth_kib} KiB while moving a {} KiB blob", SIZE / 1024);
}

#[test]
fn missing_blob_is_blob_unknown_and_leaves_no_file() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let image = small_image(&work.path().join("blobs"), "checked\n");
    let target = reference(&format!("{}/check/me:v1", registry.host()));
    // Bars mode too (drawn only on a terminal): the code path must work.
    let client = RegistryClient::new(RegistryClientOptions { progress: ProgressMode::Bars, ..options() }).unwrap();
    client.push_image(&image, &target).unwrap();
    let dest_dir = work.path().join("out");
    let dest = dest_dir.join("blob");
    let missing = sha256(b"not pushed anywhere");
    let error = client.fetch_blob_to_file(&target, &missing, &dest).unwrap_err();
    assert!(matches!(error, RegistryError::BlobUnknown { .. }), "{error:?}");
    assert!(!error.is_retryable());
    assert_no_files(&dest_dir);
}

fn assert_no_files(dir: &Path) {
    let leftovers: Vec<_> =
        std::fs::read_dir(dir).map(|entries| entries.map(|entry| entry.unwrap().path()).collect()).unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A registry that serves other bytes than the digest names (a broken proxy):
/// the download fails with DigestMismatch and the temp file is gone.
#[test]
fn corrupted_blob_is_digest_mismatch_and_leaves_no_file() {
    let (host, server) = fake_server(|_request| ("200 OK", String::new(), b"corrupted bytes".to_vec()));
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("blob");
    let wanted = sha256(b"the real bytes");
    let mut options = options();
    options.max_retries = 0;
    let error = RegistryClient::new(options)
        .unwrap()
        .fetch_blob_to_file(&reference(&format!("{host}/some/repo")), &wanted, &dest)
        .unwrap_err();
    match &error {
        RegistryError::DigestMismatch { expected, actual, .. } => {
            assert_eq!(expected, &wanted);
            assert_eq!(actual, &sha256(b"corrupted bytes"));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert_no_files(work.path());
    drop(server);
}

#[test]
fn index_without_the_platform_is_no_platform() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let image = small_image(&work.path().join("blobs"), "arm only\n");
    let client = client();
    let by_digest = reference(&format!("{}/multi/arch:arm-only", registry.host())).with_digest(sha256(&image.manifest));
    client.push_image(&image, &by_digest).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": sha256(&image.manifest).to_string(),
            "size": image.manifest.len(),
            "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
        }],
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let tagged = reference(&format!("{}/multi/arch:arm-only", registry.host()));
    client.push_manifest(&tagged, &index_bytes, OCI_INDEX).unwrap();

    let fetched = client.fetch_manifest(&tagged).unwrap();
    assert_eq!(fetched.media_type, OCI_INDEX);
    assert_eq!(fetched.digest, sha256(&index_bytes));
    let error = client.resolve_platform(&tagged, fetched.clone(), "linux", "amd64").unwrap_err();
    match &error {
        RegistryError::NoPlatform { available, .. } => {
            assert_eq!(available, &["linux/arm64/v8".to_string()])
        }
        other => panic!("expected NoPlatform, got {other:?}"),
    }
    assert!(error.to_string().contains("linux/arm64"), "{error}");
    assert!(error.to_string().contains("no linux/amd64 image"), "{error}");

    let arm = client.resolve_platform(&tagged, fetched, "linux", "arm64").unwrap();
    assert_eq!(arm.bytes, image.manifest);
}

/// The same image with Docker schema 2 media types.
fn as_docker(oci: ImageToPush) -> ImageToPush {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": oci.config.digest.to_string(),
            "size": oci.config.size,
        },
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "digest": oci.layers[0].digest.to_string(),
            "size": oci.layers[0].size,
        }],
    });
    ImageToPush { manifest: serde_json::to_vec(&manifest).unwrap(), manifest_media_type: DOCKER_MANIFEST.into(), ..oci }
}

/// Docker schema 2 manifests and manifest lists are pulled like OCI ones.
#[test]
fn docker_manifest_list_resolves_to_the_platform() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let blobs = work.path().join("blobs");
    let client = client();
    let name = format!("{}/docker/list", registry.host());
    let mut entries = Vec::new();
    let mut amd64 = None;
    for (architecture, text) in [("arm64", "arm flavour\n"), ("amd64", "amd flavour\n")] {
        let image = as_docker(small_image(&blobs, text));
        let digest = sha256(&image.manifest);
        client.push_image(&image, &reference(&format!("{name}@{digest}"))).unwrap();
        entries.push(serde_json::json!({
            "mediaType": DOCKER_MANIFEST,
            "digest": digest.to_string(),
            "size": image.manifest.len(),
            "platform": {"os": "linux", "architecture": architecture},
        }));
        amd64 = Some(image);
    }
    let amd64 = amd64.unwrap();
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": entries,
    });
    let list_bytes = serde_json::to_vec(&list).unwrap();
    let tagged = reference(&format!("{name}:multi"));
    client.push_manifest(&tagged, &list_bytes, DOCKER_MANIFEST_LIST).unwrap();

    let pulled_dir = work.path().join("pulled");
    let pulled = client.pull_image(&tagged, "linux", "amd64", &pulled_dir).unwrap();
    assert_eq!(pulled.pinned_digest, sha256(&list_bytes));
    assert_eq!(pulled.manifest.media_type, DOCKER_MANIFEST);
    assert_eq!(pulled.manifest.bytes, amd64.manifest);
    assert_eq!(pulled.layers[0].digest, amd64.layers[0].digest);
    assert!(imgbake::registry::blob_path(&pulled_dir, &amd64.layers[0].digest).exists());

    let error = client.pull_image(&tagged, "linux", "s390x", &pulled_dir).unwrap_err();
    assert_eq!(error.to_string(), format!("{tagged} has no linux/s390x image; available: linux/arm64, linux/amd64"));
}

#[test]
fn htpasswd_registry_needs_the_credentials() {
    let registry = TestRegistry::start_with_htpasswd("builder", "correct horse");
    let work = tempfile::tempdir().unwrap();
    let image = small_image(&work.path().join("blobs"), "private\n");
    let target = reference(&format!("{}/private/app:v1", registry.host()));

    let error = client().push_image(&image, &target).unwrap_err();
    assert!(
        matches!(&error, RegistryError::Unauthorized { registry, status: 401, .. } if *registry == registry_host(&target)),
        "{error:?}"
    );
    assert!(!error.is_retryable());

    let mut wrong = options();
    wrong.credentials.insert(registry.host(), Credentials::new("builder", "wrong password"));
    let error = RegistryClient::new(wrong).unwrap().push_image(&image, &target).unwrap_err();
    assert!(matches!(error, RegistryError::Unauthorized { .. }), "{error:?}");
    assert!(!format!("{error} {error:?}").contains("wrong password"));

    let mut right = options();
    right.credentials.insert(registry.host(), Credentials::new("builder", "correct horse"));
    let client = RegistryClient::new(right).unwrap();
    let report = client.push_image(&image, &target).unwrap();
    let fetched = client.fetch_manifest(&target).unwrap();
    assert_eq!(fetched.digest, report.manifest_digest);
}

fn registry_host(reference: &Reference) -> String {
    reference.registry.clone()
}

/// The token flow against a loopback server: the registry answers 401 with a
/// Bearer challenge, the token endpoint wants Basic credentials, and the
/// manifest is served for the issued token only.
#[test]
fn bearer_token_flow() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let expected_basic = Credentials::new("robot", "s3cret").basic_header();
    let realm_host = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let realm_for_server = realm_host.clone();
    let (host, _server) = fake_server(move |request| {
        let path = request.split_whitespace().nth(1).unwrap_or("");
        let authorization = request_header(request, "authorization");
        if path.starts_with("/token") {
            let good = authorization.as_deref() == Some(expected_basic.as_str())
                && path.contains("scope=repository%3Aml%2Fmodel%3Apull")
                && path.contains("service=test-registry");
            if good {
                ("200 OK", String::new(), br#"{"token":"tok-123"}"#.to_vec())
            } else {
                ("401 Unauthorized", String::new(), Vec::new())
            }
        } else if authorization.as_deref() == Some("Bearer tok-123") {
            ("200 OK", format!("Content-Type: {OCI_MANIFEST}\r\n"), manifest.to_vec())
        } else {
            let realm = format!("http://{}/token", realm_for_server.get().unwrap());
            (
                "401 Unauthorized",
                format!(
                    "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"test-registry\",scope=\"repository:ml/model:pull\"\r\n"
                ),
                Vec::new(),
            )
        }
    });
    realm_host.set(host.clone()).unwrap();
    let target = reference(&format!("{host}/ml/model:v1"));

    let anonymous = client().fetch_manifest(&target).unwrap_err();
    assert!(matches!(anonymous, RegistryError::Unauthorized { status: 401, .. }), "{anonymous:?}");

    let mut with_credentials = options();
    with_credentials.credentials.insert(host.clone(), Credentials::new("robot", "s3cret"));
    let fetched = RegistryClient::new(with_credentials).unwrap().fetch_manifest(&target).unwrap();
    assert_eq!(fetched.bytes, manifest.to_vec());
    assert_eq!(fetched.media_type, OCI_MANIFEST);
}
