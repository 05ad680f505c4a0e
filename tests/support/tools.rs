//! skopeo / umoci / runc / debootstrap helpers for integration tests. Every
//! helper is bounded in time: a hung tool fails the test, it never hangs it.
//!
//! What runc needs on our machines (checked by hand on the dev sandbox, a
//! Firecracker VM: Debian 12, kernel 6.x, running as root, cgroup v1
//! hierarchies mounted under /sys/fs/cgroup, rootfs on ext4; runc 1.1.5):
//!
//! - The stock `runc spec` (not `--rootless`) runs as is once
//!   `process.terminal` is false; with a terminal, runc wants a console
//!   socket. umoci's generated config.json also sets `terminal: true`.
//!   No `--no-pivot`, no `rootfsPropagation` change, no cgroup-namespace edit
//!   was needed (the stock spec has no cgroup namespace), and cgroup v1
//!   cgroups are created fine.
//! - `linux.resources` holds only a deny-all device rule in the stock spec;
//!   runc adds its default device allow-list (null, zero, urandom, tty, …)
//!   anyway. We remove `linux.resources` so no cgroup limit can make a test
//!   flaky on a small machine (the design says: no cgroup limits).
//! - Removing the `network` namespace shares the host network, so a server in
//!   the container listening on 127.0.0.1 is reachable from the test and the
//!   container reaches the loopback registry and fixture servers.
//! - `root.readonly` is true in the stock spec; we set it false so apps may
//!   write (e.g. `/tmp`, `__pycache__`).
//! - Bind mounts: `{"type": "bind", "options": ["rbind", "rw"]}` works for
//!   volume directories.
//! - `runc run -d` with stdout/stderr redirected to a file detaches cleanly;
//!   `runc kill <id> KILL` then `runc delete -f <id>` cleans up. Killing the
//!   foreground `runc run` process alone would leave the container running,
//!   so timeouts go through `runc kill` first.

use serde_json::{json, Value};
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Set to `1` to skip tests that need external tools: `require_tool` then
/// returns false instead of panicking.
pub const SKIP_TOOL_TESTS_ENV: &str = "IMGBAKE_SKIP_TOOL_TESTS";
/// Overrides where the cached debootstrap rootfs lives.
pub const BASE_ROOTFS_ENV: &str = "IMGBAKE_BASE_ROOTFS";

/// Default bound for one skopeo / umoci / runc invocation.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound for building the base rootfs (about a minute on the dev machine).
pub const BASE_ROOTFS_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Whether `name` is on PATH (or in /usr/sbin, /sbin for root tools).
pub fn tool_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate).is_ok_and(|m| {
                m.is_file() && {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                }
            })
        })
}

/// Whether the tests that need external tools should be skipped.
pub fn skipping_tool_tests() -> bool {
    std::env::var(SKIP_TOOL_TESTS_ENV).is_ok_and(|value| value == "1")
}

/// True when `name` is installed. When it is not: returns false if
/// `IMGBAKE_SKIP_TOOL_TESTS=1` (the test should return early), panics
/// otherwise. With `IMGBAKE_SKIP_TOOL_TESTS=1` it returns false even when the
/// tool is installed, so the whole tool suite can be switched off.
pub fn require_tool(name: &str) -> bool {
    if skipping_tool_tests() {
        eprintln!("skipping: {SKIP_TOOL_TESTS_ENV}=1 (needs `{name}`)");
        return false;
    }
    if tool_path(name).is_none() {
        panic!("`{name}` is not installed: run `bash .ci/run` or apt-get install {}", debian_package(name));
    }
    true
}

/// The Debian package that ships a tool, for error messages.
fn debian_package(tool: &str) -> &str {
    match tool {
        "docker-registry" => "docker-registry",
        "python3" => "python3",
        other => other,
    }
}

/// A child whose stdout and stderr are drained by threads, so a chatty child
/// never blocks on a full pipe while we poll it.
struct Captured {
    child: Child,
    description: String,
    stdout: Option<thread::JoinHandle<Vec<u8>>>,
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
}

impl Captured {
    /// Spawns `command` in its own process group with piped output.
    fn spawn(command: &mut Command) -> Captured {
        let description = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {description}: {error}"));
        let stdout = child.stdout.take().map(spawn_reader);
        let stderr = child.stderr.take().map(spawn_reader);
        Captured { child, description, stdout, stderr }
    }

    /// The exit status, or `None` if still running after `timeout`.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(&mut self.child, Instant::now() + timeout)
    }

    /// Kills the whole process group and reaps the child.
    fn kill(&mut self) -> ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain syscall; the group was created by `process_group(0)`.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        self.child.wait().expect("reap killed child")
    }

    fn output(self, status: ExitStatus) -> Output {
        let join = |reader: Option<thread::JoinHandle<Vec<u8>>>| {
            reader.map(|r| r.join().unwrap_or_default()).unwrap_or_default()
        };
        Output { status, stdout: join(self.stdout), stderr: join(self.stderr) }
    }
}

fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_reader(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = pipe.read_to_end(&mut buffer);
        buffer
    })
}

fn timeout_panic(what: &str, timeout: Duration, output: &Output) -> ! {
    panic!(
        "{what} did not finish within {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `command` to completion within `timeout`, capturing stdout and
/// stderr. On timeout the whole process group is killed and the test panics
/// with what was captured so far.
pub fn run_with_timeout(command: &mut Command, timeout: Duration) -> Output {
    let mut captured = Captured::spawn(command);
    match captured.wait(timeout) {
        Some(status) => captured.output(status),
        None => {
            let status = captured.kill();
            let description = captured.description.clone();
            timeout_panic(&description, timeout, &captured.output(status))
        }
    }
}

/// Like `run_with_timeout`, and panics unless the command succeeded.
pub fn run_checked(command: &mut Command, timeout: Duration) -> Output {
    let description = format!("{command:?}");
    let output = run_with_timeout(command, timeout);
    assert!(
        output.status.success(),
        "{description} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

// ---------------------------------------------------------------- skopeo

/// skopeo's TLS flag for a reference on the loopback registry (plain HTTP).
fn insecure_flag(image_ref: &str, flag: &str) -> Option<String> {
    let rest = image_ref.strip_prefix("docker://")?;
    let loopback = ["127.0.0.1", "localhost", "[::1]"].iter().any(|host| rest.starts_with(host));
    loopback.then(|| format!("{flag}=false"))
}

/// `skopeo inspect <image_ref>` as JSON (`docker://127.0.0.1:port/repo:tag`,
/// `oci:<layout dir>:<tag>`, …). Loopback registries are reached over HTTP.
pub fn skopeo_inspect(image_ref: &str) -> Value {
    skopeo_inspect_with(image_ref, &[])
}

/// `skopeo inspect --raw`: the manifest (or index) exactly as stored.
pub fn skopeo_inspect_raw(image_ref: &str) -> Value {
    skopeo_inspect_with(image_ref, &["--raw"])
}

/// `skopeo inspect --config`: the image config document.
pub fn skopeo_inspect_config(image_ref: &str) -> Value {
    skopeo_inspect_with(image_ref, &["--config"])
}

fn skopeo_inspect_with(image_ref: &str, extra_args: &[&str]) -> Value {
    let mut command = Command::new("skopeo");
    command.arg("inspect").args(extra_args);
    command.args(insecure_flag(image_ref, "--tls-verify"));
    command.arg(image_ref);
    let output = run_checked(&mut command, TOOL_TIMEOUT);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "skopeo inspect {image_ref} printed invalid JSON ({error}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// `skopeo copy [extra_args] <src> <dst>`; loopback registries over HTTP.
pub fn skopeo_copy(src: &str, dst: &str, extra_args: &[&str]) -> Output {
    let mut command = Command::new("skopeo");
    command.arg("copy").arg("--quiet");
    command.args(insecure_flag(src, "--src-tls-verify"));
    command.args(insecure_flag(dst, "--dest-tls-verify"));
    command.args(extra_args).arg(src).arg(dst);
    run_checked(&mut command, TOOL_TIMEOUT)
}

// ---------------------------------------------------------------- umoci

/// `umoci unpack --image <layout_dir>:<tag> <bundle_dir>`: a runc bundle
/// (config.json + rootfs/). `bundle_dir` must not exist yet. zstd layers are
/// decoded first ([`decode_zstd_layers`]), so the tests' node reads what
/// containerd reads.
pub fn umoci_unpack(layout_dir: &Path, tag: &str, bundle_dir: &Path) {
    decode_zstd_layers(layout_dir, tag);
    let image = format!("{}:{tag}", layout_dir.display());
    run_checked(Command::new("umoci").args(["unpack", "--image"]).arg(image).arg(bundle_dir), TOOL_TIMEOUT);
}

pub const MEDIA_TYPE_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// The zstd-capable node: Debian's umoci (0.4.7) unpacks gzip and plain tar
/// layers only, so every tar+zstd layer of `tag` is streamed through a zstd
/// decoder into a plain-tar blob (whose digest is the layer's diff_id, which
/// umoci checks against the image config) and the manifest is rewritten to
/// name it, as containerd feeds a zstd layer through its decoder into the tar
/// applier. Returns how many layers were decoded (0 leaves the layout as is).
pub fn decode_zstd_layers(layout_dir: &Path, tag: &str) -> usize {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let blob = |digest: &str| layout_dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let index_path = layout_dir.join("index.json");
    let mut index: Value = serde_json::from_slice(&fs::read(&index_path).expect("read index.json")).expect("index");
    let Some(entry) = index["manifests"]
        .as_array_mut()
        .and_then(|entries| entries.iter_mut().find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == tag))
    else {
        return 0;
    };
    let manifest_digest = entry["digest"].as_str().expect("a digest").to_string();
    let mut manifest: Value =
        serde_json::from_slice(&fs::read(blob(&manifest_digest)).expect("read the manifest")).expect("manifest JSON");
    let mut decoded = 0;
    for layer in manifest["layers"].as_array_mut().into_iter().flatten() {
        if layer["mediaType"] != MEDIA_TYPE_TAR_ZSTD {
            continue;
        }
        let source = fs::File::open(blob(layer["digest"].as_str().expect("a digest"))).expect("open a zstd layer");
        let mut decoder = zstd::stream::read::Decoder::new(source).expect("a zstd decoder");
        let temp = layout_dir.join("blobs/sha256/.decoding");
        let mut out = std::io::BufWriter::new(fs::File::create(&temp).expect("create a blob"));
        let (mut hasher, mut size, mut buffer) = (Sha256::new(), 0u64, vec![0u8; 1 << 20]);
        loop {
            let n = decoder.read(&mut buffer).expect("decode a zstd layer");
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n]).expect("write a blob");
            size += n as u64;
        }
        out.into_inner().expect("flush a blob").sync_all().expect("sync a blob");
        let digest = format!("sha256:{:x}", hasher.finalize());
        fs::rename(&temp, blob(&digest)).expect("commit a blob");
        layer["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar");
        layer["digest"] = json!(digest);
        layer["size"] = json!(size);
        decoded += 1;
    }
    if decoded > 0 {
        let bytes = serde_json::to_vec(&manifest).expect("serialize the manifest");
        let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
        fs::write(blob(&digest), &bytes).expect("write the manifest");
        entry["digest"] = json!(digest);
        entry["size"] = json!(bytes.len());
        fs::write(&index_path, serde_json::to_vec(&index).expect("serialize index.json")).expect("write index.json");
    }
    decoded
}

// ---------------------------------------------------------------- runc

/// A host directory bind-mounted into the container (a volume).
#[derive(Debug, Clone)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

impl BindMount {
    pub fn read_write(source: impl Into<PathBuf>, destination: &str) -> BindMount {
        BindMount { source: source.into(), destination: destination.to_string(), read_only: false }
    }

    pub fn read_only(source: impl Into<PathBuf>, destination: &str) -> BindMount {
        BindMount { read_only: true, ..BindMount::read_write(source, destination) }
    }
}

/// Makes `bundle_dir` runnable here. Edits the existing config.json (from
/// `umoci unpack`) or writes the stock `runc spec` first, then applies the
/// edits described at the top of this file. `args` replaces the process
/// arguments unless empty (then the image's entrypoint + cmd stay); `env`
/// sets variables, replacing ones of the same name.
pub fn prepare_runc_bundle(bundle_dir: &Path, args: &[&str], env: &[(&str, &str)], extra_mounts: &[BindMount]) {
    let config_path = bundle_dir.join("config.json");
    if !config_path.exists() {
        run_checked(Command::new("runc").arg("spec").arg("--bundle").arg(bundle_dir), TOOL_TIMEOUT);
    }
    let text = fs::read_to_string(&config_path).expect("read config.json");
    let mut config: Value = serde_json::from_str(&text).expect("config.json is JSON");
    edit_runc_config(&mut config, args, env, extra_mounts);
    fs::write(&config_path, serde_json::to_vec_pretty(&config).expect("serialize config.json"))
        .expect("write config.json");
}

fn edit_runc_config(config: &mut Value, args: &[&str], env: &[(&str, &str)], extra_mounts: &[BindMount]) {
    let process = config["process"].as_object_mut().expect("config.json has a process");
    process.insert("terminal".into(), json!(false));
    if !args.is_empty() {
        process.insert("args".into(), json!(args));
    }
    let mut variables: Vec<String> = process
        .get("env")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    for (name, value) in env {
        let prefix = format!("{name}=");
        variables.retain(|entry| !entry.starts_with(&prefix));
        variables.push(format!("{name}={value}"));
    }
    process.insert("env".into(), json!(variables));

    config["root"]["readonly"] = json!(false);

    let linux = config["linux"].as_object_mut().expect("config.json has linux");
    linux.remove("resources");
    if let Some(namespaces) = linux.get_mut("namespaces").and_then(Value::as_array_mut) {
        namespaces.retain(|namespace| namespace["type"] != "network");
    }

    let mounts = config["mounts"].as_array_mut().expect("config.json has mounts");
    for mount in extra_mounts {
        let mode = if mount.read_only { "ro" } else { "rw" };
        mounts.push(json!({
            "destination": mount.destination,
            "type": "bind",
            "source": mount.source,
            "options": ["rbind", mode],
        }));
    }
}

/// A container id unique to this test process.
pub fn unique_container_id(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("imgbake-{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// `runc run` in the foreground; returns its output (the container's exit
/// code is runc's). Panics after `timeout`, having killed the container. The
/// container is deleted afterwards in every case.
pub fn runc_run(bundle_dir: &Path, container_id: &str, timeout: Duration) -> Output {
    // A leftover from an aborted earlier run would make `runc run` fail.
    runc_kill_delete(container_id);
    let mut captured =
        Captured::spawn(Command::new("runc").arg("run").arg("--bundle").arg(bundle_dir).arg(container_id));
    match captured.wait(timeout) {
        Some(status) => {
            runc_kill_delete(container_id);
            captured.output(status)
        }
        None => {
            // Killing the foreground `runc run` alone would leave the
            // container running: kill it through runc first.
            runc_kill_delete(container_id);
            let status = captured.kill();
            timeout_panic(&format!("container {container_id}"), timeout, &captured.output(status))
        }
    }
}

/// A container started with `runc run -d`; killed and deleted on drop.
#[derive(Debug)]
pub struct DetachedContainer {
    pub id: String,
    /// The container's stdout and stderr.
    pub log: PathBuf,
}

impl DetachedContainer {
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DetachedContainer {
    fn drop(&mut self) {
        runc_kill_delete(&self.id);
    }
}

/// `runc run -d` (for servers): returns once the container's process has
/// started. Its stdout and stderr go to `<bundle_dir>/container.log`.
pub fn runc_run_detached(bundle_dir: &Path, container_id: &str) -> DetachedContainer {
    runc_kill_delete(container_id);
    let log = bundle_dir.join("container.log");
    let log_file = OpenOptions::new().create(true).append(true).open(&log).expect("open container log");
    let mut child = Command::new("runc")
        .arg("run")
        .arg("--detach")
        .arg("--bundle")
        .arg(bundle_dir)
        .arg(container_id)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("clone log fd"))
        .stderr(log_file)
        .spawn()
        .expect("start runc run --detach");
    let container = DetachedContainer { id: container_id.to_string(), log };
    let Some(status) = wait_until(&mut child, Instant::now() + TOOL_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("runc run --detach {container_id} did not return within {TOOL_TIMEOUT:?}");
    };
    assert!(status.success(), "runc run --detach {container_id} failed ({status}):\n{}", container.log_text());
    container
}

/// `runc kill <id> KILL` then `runc delete --force <id>`; ignores a container
/// that does not exist.
pub fn runc_kill_delete(container_id: &str) {
    let quiet = |args: &[&str]| {
        let mut command = Command::new("runc");
        command.args(args);
        // Cleanup must never panic (it runs in Drop); a hung runc is killed.
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        if let Ok(mut child) = child {
            if wait_until(&mut child, Instant::now() + Duration::from_secs(30)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    };
    quiet(&["kill", container_id, "KILL"]);
    quiet(&["delete", "--force", container_id]);
}

// ---------------------------------------------------------------- base rootfs

/// The repository root (where `scripts/` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cached debootstrap rootfs (Debian bookworm minbase + python3), built by
/// `scripts/make-base-rootfs.sh` on first use (about 1–3 minutes). The script
/// takes a lock next to the rootfs, so parallel tests (threads or processes)
/// build it once and the others wait for it.
pub fn base_rootfs() -> PathBuf {
    let dest = std::env::var_os(BASE_ROOTFS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/imgbake-fixtures/bookworm-python-rootfs"));
    if dest.join(".complete").exists() {
        return dest;
    }
    assert!(
        tool_path("debootstrap").is_some(),
        "`debootstrap` is not installed: run `bash .ci/run` or apt-get install debootstrap"
    );
    let started = Instant::now();
    let output = run_checked(
        Command::new("bash").arg(repo_root().join("scripts/make-base-rootfs.sh")).arg(&dest),
        BASE_ROOTFS_TIMEOUT,
    );
    eprintln!(
        "base rootfs after {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or("")
    );
    assert!(dest.join(".complete").exists(), "{} is incomplete after make-base-rootfs.sh", dest.display());
    dest
}

/// Copies a directory tree with `cp -a` (keeps owners, modes, symlinks,
/// device nodes). `dest` must not exist.
pub fn copy_tree(src: &Path, dest: &Path) {
    run_checked(Command::new("cp").arg("-a").arg("--reflink=auto").arg(src).arg(dest), TOOL_TIMEOUT);
}

// ---------------------------------------------------------------- http

/// Polls `url` until any HTTP response arrives; returns its status code.
/// Panics after `timeout` with the last error.
pub fn wait_for_http(url: &str, timeout: Duration) -> u16 {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        // Loopback servers only: an HTTP_PROXY in the environment must not apply.
        .no_proxy()
        .build()
        .expect("http client");
    let deadline = Instant::now() + timeout;
    loop {
        let last_error = match client.get(url).send() {
            Ok(response) => return response.status().as_u16(),
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            panic!("{url} did not answer within {timeout:?}: {last_error}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// `imgbake build --json PROJECT --base scratch` into `DIR/out` (tag `app`)
/// with the cache in `DIR/cache` and extra environment variables.
/// `imgbake` is the binary (`env!("CARGO_BIN_EXE_imgbake")` in a test).
pub fn imgbake_build_on_scratch(imgbake: &str, project: &Path, dir: &Path, env: &[(String, String)]) -> Output {
    Command::new(imgbake)
        .args(["build", "--json", project.to_str().unwrap(), "--base", "scratch", "--output"])
        .arg(format!("oci:{}:app", dir.join("out").display()))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap()
}

/// Waits until `answers()` is true for a server just spawned as `child`;
/// panics with its log when it exits first or does not answer within `wait`.
pub fn wait_until_answering(
    name: &str,
    child: &mut std::process::Child,
    log: &Path,
    wait: std::time::Duration,
    answers: impl Fn() -> bool,
) {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if answers() {
            return;
        }
        let log_text = || fs::read_to_string(log).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited ({status}) before answering:\n{}", log_text());
        }
        if std::time::Instant::now() > deadline {
            panic!("{name} did not answer within {wait:?}:\n{}", log_text());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The status and whole text of an HTTP/1.1 response on a `Connection: close` stream.
pub fn read_response(stream: &mut impl std::io::Read) -> std::io::Result<(u16, String)> {
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:.200}")))?;
    Ok((status, text))
}
