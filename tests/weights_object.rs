//! Object-store and plain-URL weights sources against real servers on
//! loopback: moto's S3 server for `s3://` (listing a folder, patterns,
//! errors, unsafe keys, streaming a 20 MiB object in bounded memory, ranged
//! reads) and a tiny HTTP server thread for `https://`-style single files.
//! GCS and Azure have no server here; only their option parsing is unit-tested.

mod support;

use imgbake::spec::WeightsSource;
use imgbake::weights::http::HttpSource;
use imgbake::weights::object::{ObjectSource, READ_RANGE_SIZE};
use imgbake::weights::{Secret, WeightsError};
use sha2::{Digest as _, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use support::data::peak_rss_kib;
use support::s3::TestS3;

fn s3(bucket: &str, prefix: &str) -> WeightsSource {
    WeightsSource::S3 { bucket: bucket.to_string(), prefix: prefix.to_string() }
}

fn patterns(list: &[&str]) -> Vec<String> {
    list.iter().map(|p| p.to_string()).collect()
}

/// A bucket with a folder of nested keys, a sibling folder sharing the
/// prefix's first letters, and a folder marker object.
fn fixture(server: &TestS3) {
    server.create_bucket("weights");
    for (key, body) in [
        ("models/llama/config.json", &b"{}"[..]),
        ("models/llama/model-00002.safetensors", b"two"),
        ("models/llama/model-00001.safetensors", b"one"),
        ("models/llama/tokenizer/tokenizer.json", b"tok"),
        ("models/llama/onnx/model.onnx", b"onnx"),
        ("models/llama/tokenizer/", b""),
        ("models/llama2/config.json", b"other model"),
        ("models/single.bin", b"single"),
    ] {
        server.put_object("weights", key, body);
    }
}

#[test]
fn a_prefix_lists_its_folder_recursively_with_relative_sorted_paths() {
    let Some(server) = TestS3::start() else { return };
    fixture(&server);
    let source = ObjectSource::with_options(&s3("weights", "models/llama/"), server.options()).unwrap();
    let listing = source.list(&[], &[], "s3://weights/models/llama/").unwrap();
    let paths: Vec<&str> = listing.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "config.json",
            "model-00001.safetensors",
            "model-00002.safetensors",
            "onnx/model.onnx",
            "tokenizer/tokenizer.json"
        ],
        "llama2/ must not leak in, the tokenizer/ marker must be skipped"
    );
    assert_eq!(listing.uri, "s3://weights/models/llama/");
    assert_eq!(listing.revision, None);
    let config = &listing.files[0];
    assert_eq!(config.size, 2);
    assert_eq!(config.sha256, None);
    assert_eq!(config.url, "s3://weights/models/llama/config.json");
    assert!(config.etag.as_deref().is_some_and(|etag| !etag.is_empty()), "{config:?}");
    assert_eq!(listing.total_size(), 2 + 3 + 3 + 4 + 3);

    // The whole bucket, and a prefix that is one object.
    let whole = ObjectSource::with_options(&s3("weights", ""), server.options()).unwrap();
    assert_eq!(whole.list(&[], &[], "s3://weights").unwrap().files.len(), 7);
    let single = ObjectSource::with_options(&s3("weights", "models/single.bin"), server.options()).unwrap();
    let listing = single.list(&[], &[], "s3://weights/models/single.bin").unwrap();
    assert_eq!(listing.files.len(), 1);
    assert_eq!(listing.files[0].path, "single.bin");
    assert_eq!(listing.files[0].url, "s3://weights/models/single.bin");
    let mut bytes = Vec::new();
    single.open(&listing.files[0]).unwrap().read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, b"single");
}

#[test]
fn patterns_filter_and_an_empty_match_names_them() {
    let Some(server) = TestS3::start() else { return };
    fixture(&server);
    let source = ObjectSource::with_options(&s3("weights", "models/llama"), server.options()).unwrap();
    let listing = source.list(&patterns(&["*.safetensors", "tokenizer/"]), &patterns(&["*00002*"]), "u").unwrap();
    let paths: Vec<&str> = listing.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["model-00001.safetensors", "tokenizer/tokenizer.json"]);

    let error = source.list(&patterns(&["*.gguf"]), &patterns(&["*.onnx"]), "s3://weights/models/llama").unwrap_err();
    assert!(matches!(error, WeightsError::Empty { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("s3://weights/models/llama") && text.contains("*.gguf") && text.contains("*.onnx"), "{text}");

    // A prefix with nothing under it is empty too, not an error of its own.
    let nothing = ObjectSource::with_options(&s3("weights", "nothing/here"), server.options()).unwrap();
    assert!(matches!(nothing.list(&[], &[], "u"), Err(WeightsError::Empty { .. })));
}

#[test]
fn a_missing_bucket_is_not_found_and_names_the_source() {
    let Some(server) = TestS3::start() else { return };
    let source = ObjectSource::with_options(&s3("no-such-bucket", "models"), server.options()).unwrap();
    let error = source.list(&[], &[], "s3://no-such-bucket/models").unwrap_err();
    assert!(matches!(error, WeightsError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("s3://no-such-bucket/models"), "{error}");
}

/// moto's default mode accepts any key, so wrong credentials are checked
/// against a second server with IAM auth on (`INITIAL_NO_AUTH_ACTION_COUNT=0`),
/// where an unknown access key gets HTTP 403.
#[test]
fn unknown_credentials_are_unauthorized_and_never_printed() {
    let Some(server) = TestS3::start_with_auth() else { return };
    let options = server.options_with_keys("AKIAWRONGKEY000", "wrong-secret-value");
    let source = ObjectSource::with_options(&s3("weights", "models"), options).unwrap();
    let error = source.list(&[], &[], "s3://weights/models").unwrap_err();
    let text = format!("{error} / {error:?}");
    assert!(matches!(error, WeightsError::Unauthorized { status: 403, .. }), "{text}");
    assert!(text.contains("s3://weights/models") && text.contains("AWS_ACCESS_KEY_ID"), "{text}");
    assert!(!text.contains("wrong-secret-value") && !text.contains("AKIAWRONGKEY000"), "{text}");

    // With a secret named, the error tells the user to set that secret.
    let mut options = server.options_with_keys("AKIAWRONGKEY000", "wrong-secret-value");
    options.credential_name = Some("aws_secret_json".to_string());
    let source = ObjectSource::with_options(&s3("weights", "models"), options).unwrap();
    let text = source.list(&[], &[], "s3://weights/models").unwrap_err().to_string();
    assert!(text.contains("aws_secret_json"), "{text}");
}

#[test]
fn a_key_that_climbs_out_of_the_prefix_is_unsafe() {
    let Some(server) = TestS3::start() else { return };
    server.create_bucket("evil");
    server.put_object("evil", "prefix/model.bin", b"ok");
    server.put_object("evil", "prefix/../../etc/passwd", b"root:x:0:0");
    let source = ObjectSource::with_options(&s3("evil", "prefix"), server.options()).unwrap();
    let error = source.list(&[], &[], "s3://evil/prefix").unwrap_err();
    match &error {
        WeightsError::UnsafePath { path, .. } => assert!(path.contains(".."), "{error}"),
        other => panic!("expected UnsafePath, got {other:?}"),
    }
    assert!(error.to_string().contains("s3://evil/prefix"), "{error}");
}

fn fill(seed: u64) -> impl FnMut(u64, &mut [u8]) {
    // Incompressible and position dependent: a swapped or repeated range shows.
    move |offset, chunk| {
        let mut rng = fastrand::Rng::with_seed(seed ^ offset);
        rng.fill(chunk);
    }
}

/// The bytes `fill` makes, hashed chunk by chunk as the uploader made them.
fn expected_sha256(size: u64, seed: u64) -> Vec<u8> {
    let mut fill = fill(seed);
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < size {
        let n = chunk.len().min((size - offset) as usize);
        fill(offset, &mut chunk[..n]);
        hasher.update(&chunk[..n]);
        offset += n as u64;
    }
    hasher.finalize().to_vec()
}

#[test]
fn open_streams_a_20_mib_object_exactly_in_bounded_memory() {
    const SIZE: u64 = 20 * 1024 * 1024 + 12345;
    let Some(server) = TestS3::start() else { return };
    server.create_bucket("big");
    server.put_object_streamed("big", "models/big/model.safetensors", SIZE, &mut fill(42));
    let expected = expected_sha256(SIZE, 42);
    let source = ObjectSource::with_options(&s3("big", "models/big"), server.options()).unwrap();
    let listing = source.list(&[], &[], "s3://big/models/big").unwrap();
    let file = &listing.files[0];
    assert_eq!(file.size, SIZE);

    // Reset the peak to the current RSS (Linux: "5" clears VmHWM), so the
    // growth measured is this read's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss_kib();
    let mut reader = source.open(file).unwrap();
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buffer).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    let growth_kib = peak_rss_kib().saturating_sub(before);
    eprintln!("20 MiB object: peak RSS growth {growth_kib} KiB");
    assert_eq!(total, SIZE);
    assert_eq!(hasher.finalize().to_vec(), expected, "the streamed bytes differ from the object");
    assert!(growth_kib < 8 * 1024, "peak RSS grew by {growth_kib} KiB while streaming a {} KiB object", SIZE / 1024);

    // Ranged reads, including one across a READ_RANGE_SIZE boundary and the tail.
    let mut whole_fill = fill(42);
    for (start, len) in [(0u64, 10u64), (READ_RANGE_SIZE - 5, 10), (SIZE - 7, 7)] {
        let bytes = source.read_range(file, start, len).unwrap();
        // Recompute the expected slice from the 1 MiB chunk that holds it.
        let mut expected = Vec::new();
        let first = start - start % (1 << 20);
        let mut offset = first;
        while (expected.len() as u64) < (start - first) + len {
            let n = (1u64 << 20).min(SIZE - offset) as usize;
            let mut chunk = vec![0u8; n];
            whole_fill(offset, &mut chunk);
            expected.extend_from_slice(&chunk);
            offset += n as u64;
        }
        let skip = (start % (1 << 20)) as usize;
        assert_eq!(bytes, expected[skip..skip + len as usize], "range {start}+{len}");
    }
    assert!(matches!(source.read_range(file, SIZE - 1, 2), Err(WeightsError::Protocol { .. })));
}

#[test]
fn a_changed_object_fails_the_read_instead_of_mixing_contents() {
    let Some(server) = TestS3::start() else { return };
    server.create_bucket("mutable");
    server.put_object("mutable", "m/weights.bin", b"version one");
    let source = ObjectSource::with_options(&s3("mutable", "m"), server.options()).unwrap();
    let listing = source.list(&[], &[], "s3://mutable/m").unwrap();
    server.put_object("mutable", "m/weights.bin", b"version two");
    let error = source.open(&listing.files[0]).unwrap().read_to_end(&mut Vec::new()).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("changed since it was listed"), "{text}");
}

/// A one-file HTTP server: `HEAD`/`GET` of `/files/<name>`, optional bearer
/// token (401 without it), `Range` support. Serves until the listener drops.
fn http_server(name: &'static str, body: &'static [u8], token: Option<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                headers.push(line.trim_end().to_ascii_lowercase());
            }
            let mut parts = request_line.split(' ');
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let authorized = token.is_none_or(|token| {
                headers.iter().any(|h| *h == format!("authorization: bearer {}", token.to_ascii_lowercase()))
            });
            let range = headers.iter().find_map(|h| h.strip_prefix("range: bytes=")).map(|r| {
                let (start, end) = r.split_once('-').unwrap();
                (start.parse::<usize>().unwrap(), end.parse::<usize>().unwrap())
            });
            let (status, content) = if !authorized {
                ("401 Unauthorized", &b"no"[..])
            } else if path != format!("/files/{name}") {
                ("404 Not Found", &b"missing"[..])
            } else if let Some((start, end)) = range {
                ("206 Partial Content", &body[start..=end])
            } else {
                ("200 OK", body)
            };
            let mut head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: \"v1\"\r\nConnection: close\r\n",
                content.len()
            );
            if let Some((start, end)) = range {
                head.push_str(&format!("Content-Range: bytes {start}-{end}/{}\r\n", body.len()));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            if method != "HEAD" {
                let _ = stream.write_all(content);
            }
        }
    });
    format!("http://{address}/files/{name}")
}

#[test]
fn an_http_url_is_one_file_sized_by_head_and_streamed_by_get() {
    let url = http_server("model.safetensors", b"safetensors bytes", None);
    let source = HttpSource::with_token(&url, None, None).unwrap();
    let listing = source.list(&[], &[]).unwrap();
    assert_eq!(listing.uri, url);
    assert_eq!(listing.files.len(), 1);
    let file = &listing.files[0];
    assert_eq!((file.path.as_str(), file.size, file.etag.as_deref()), ("model.safetensors", 17, Some("\"v1\"")));
    assert_eq!(file.url, url);
    let mut bytes = Vec::new();
    source.open(file).unwrap().read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, b"safetensors bytes");
    assert_eq!(source.read_range(file, 12, 5).unwrap(), b"bytes");

    let error = source.list(&patterns(&["*.gguf"]), &[]).unwrap_err();
    assert!(matches!(error, WeightsError::Empty { .. }), "{error:?}");

    let missing = HttpSource::with_token(&url.replace("model.safetensors", "other.bin"), None, None).unwrap();
    assert!(matches!(missing.list(&[], &[]), Err(WeightsError::NotFound { .. })));
}

#[test]
fn an_http_url_behind_a_token_is_unauthorized_without_it() {
    let url = http_server("weights.bin", b"private", Some("tok-123-SECRET"));
    let anonymous = HttpSource::with_token(&url, None, None).unwrap();
    let error = anonymous.list(&[], &[]).unwrap_err();
    assert!(matches!(error, WeightsError::Unauthorized { status: 401, .. }), "{error:?}");

    let wrong = HttpSource::with_token(&url, Some(Secret::new("nope-SECRET".into())), Some("MODEL_TOKEN")).unwrap();
    let error = wrong.list(&[], &[]).unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(text.contains("MODEL_TOKEN") && !text.contains("nope-SECRET"), "{text}");

    let right = HttpSource::with_token(&url, Some(Secret::new("tok-123-SECRET".into())), Some("MODEL_TOKEN")).unwrap();
    let listing = right.list(&[], &[]).unwrap();
    let mut bytes = Vec::new();
    right.open(&listing.files[0]).unwrap().read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, b"private");
}
