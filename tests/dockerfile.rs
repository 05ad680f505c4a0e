//! `imgbake dockerfile` and `build --builder buildah`: snapshots of the
//! rendered Dockerfile for every fixture project, the lint, the context on
//! disk, and real buildah builds from the debootstrap base in the loopback
//! registry that start under runc and hold the same files as the native build.

mod support;

use imgbake::dockerfile::{self, lint, ContextOptions, ContextSource, DockerfileError, RemoteWeights};
use imgbake::layout::{self, LayoutError, LayoutFacts, VolumePlan};
use imgbake::resolve::weights::ResolvedSource;
use imgbake::spec::WeightsEntry;
use imgbake::weights::{Listing, RemoteFile};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::data::random_bytes;
use support::hub::{self, TestHub};
use support::{base_image, registry::TestRegistry, tools};

/// Every fixture project (not fixtures/invalid or fixtures/realworld).
const FIXTURES: [&str; 8] = [
    "cerebrium-cpu-fastapi",
    "cerebrium-gpu-weights",
    "cerebrium-local-weights",
    "cerebrium-requirements-file",
    "cerebrium-shell-commands",
    "truss-bake",
    "truss-bdn-weights",
    "truss-volume",
];

/// Bound for one buildah build of a fixture (10 s to 3 min on the dev machine).
/// vfs copies the root filesystem per instruction, so a loaded machine is slower.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

fn imgbake(args: &[&str]) -> Output {
    tools::run_with_timeout(Command::new(env!("CARGO_BIN_EXE_imgbake")).args(args).env("NO_COLOR", "1"), BUILD_TIMEOUT)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Remote weights without a network, for rendering only: every remote source
/// lists a small `config.json` and a 1 GiB `model.safetensors` (sizes as a
/// hub would report them; only the split into layers depends on them, and no
/// context with these files is written to disk in this test).
struct OfflineWeights {
    dir: tempfile::TempDir,
}

impl OfflineWeights {
    fn new() -> OfflineWeights {
        OfflineWeights { dir: tempfile::tempdir().unwrap() }
    }

    fn listing(&self, entry: &WeightsEntry) -> Listing {
        let file = |path: &str, size: u64| {
            let sha = hex::encode(Sha256::digest(format!("{}/{path}", entry.uri)));
            RemoteFile {
                path: path.to_string(),
                size,
                sha256: Some(format!("sha256:{sha}").parse().unwrap()),
                etag: None,
                url: format!("https://hub.invalid/{}/resolve/0123abcd/{path}", entry.mount),
            }
        };
        Listing {
            uri: entry.uri.clone(),
            revision: Some("0123abcd0123abcd0123abcd0123abcd0123abcd".to_string()),
            files: vec![file("config.json", 64), file("model.safetensors", 1 << 30)],
        }
    }
}

impl RemoteWeights for OfflineWeights {
    fn fetch(&self, _entry: &WeightsEntry, file: &RemoteFile) -> Result<PathBuf, DockerfileError> {
        Ok(self.dir.path().join(&file.path))
    }

    /// Every offline file has its sha256 already.
    fn complete_hashes(&self, _volume: &mut VolumePlan) -> Result<(), DockerfileError> {
        Ok(())
    }

    /// Always "found", so the snapshots do not depend on the machine's uv.
    fn uv_binary(&self) -> Option<PathBuf> {
        Some(PathBuf::from("/usr/local/bin/uv"))
    }

    fn ca_bundle(&self) -> Option<PathBuf> {
        None
    }
}

/// The context of `spec` as `imgbake dockerfile` makes it, with the offline
/// listings as the resolved sources (no lock; `auto` bakes, as the cost
/// model is not asked here) and this test binary's imgbake as the hook.
fn generate(spec: &imgbake::spec::Spec, remote: &OfflineWeights) -> Result<dockerfile::Context, DockerfileError> {
    let sources: Vec<ResolvedSource> = spec
        .weights
        .iter()
        .filter(|e| !matches!(e.source, imgbake::spec::WeightsSource::Local { .. }))
        .map(|entry| ResolvedSource {
            entry: entry.clone(),
            listing: remote.listing(entry),
            hashes_from_lock: Default::default(),
            file_ratios: Default::default(),
            ratio: 0.99,
            ratio_source: "offline".into(),
        })
        .collect();
    let hook = PathBuf::from(env!("CARGO_BIN_EXE_imgbake"));
    let profile = imgbake::pricing::profile::builtin(spec.target.name.as_str()).expect("a built-in profile");
    let target = imgbake::layout::compression::CodecTarget { profile: &profile, base_layers: &[] };
    let facts = LayoutFacts { lock: None, sources: &sources, rootfs: None, hook: &hook, target };
    let plan = match layout::layout(spec, &facts, &Default::default()) {
        Ok(plan) => plan,
        Err(LayoutError::Refused(message)) => return Err(DockerfileError::NotAvailable(message)),
        Err(other) => panic!("{other}"),
    };
    dockerfile::generate(spec, &plan, None, &ContextOptions::default(), remote)
}

fn load(fixture: &str) -> imgbake::spec::Spec {
    let loaded = imgbake::config::load(&tools::repo_root().join("fixtures").join(fixture));
    loaded.spec.unwrap_or_else(|| panic!("{fixture}: {:?}", loaded.diagnostics))
}

fn describe(source: &ContextSource) -> String {
    match source {
        ContextSource::Bytes(bytes) => format!("generated, {} bytes", bytes.len()),
        ContextSource::Copy(_) => "copied from the project".to_string(),
        ContextSource::Link(_) => "hard link or copy".to_string(),
        ContextSource::Symlink(target) => format!("symlink -> {target}"),
    }
}

#[test]
fn rendered_dockerfile_of_every_fixture_is_pinned_and_lint_clean() {
    let remote = OfflineWeights::new();
    for fixture in FIXTURES {
        let spec = load(fixture);
        let context = match generate(&spec, &remote) {
            Ok(context) => context,
            // Pinned too: what this version refuses, and how it says so.
            Err(err) => {
                assert!(matches!(err, DockerfileError::NotAvailable(_)), "{fixture}: {err}");
                insta::assert_snapshot!(fixture, format!("refused (exit 2): {err}\n"));
                continue;
            }
        };
        let errors: Vec<String> = lint::lint(&context.dockerfile)
            .iter()
            .filter(|f| f.severity == lint::Severity::Error)
            .map(|f| f.to_string())
            .collect();
        assert!(errors.is_empty(), "{fixture}: {errors:#?}\n{}", context.dockerfile);
        let mut files: Vec<String> =
            context.files.iter().map(|f| format!("{}  ({})", f.path, describe(&f.source))).collect();
        files.sort();
        let text = format!(
            "{}--- .dockerignore\n{}--- context files\n{}\n",
            context.dockerfile,
            context.dockerignore,
            files.join("\n")
        );
        insta::with_settings!({ filters => vec![(regex_escape(env!("CARGO_PKG_VERSION")), "[version]")] }, {
            insta::assert_snapshot!(fixture, text);
        });
    }
}

fn regex_escape(text: &str) -> &'static str {
    Box::leak(text.replace('.', "\\.").into_boxed_str())
}

#[test]
fn generated_stages_follow_the_native_build_order() {
    let remote = OfflineWeights::new();
    let context = generate(&load("cerebrium-gpu-weights"), &remote).unwrap();
    let text = &context.dockerfile;
    let position = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("no `{needle}` in\n{text}"));
    let order = [
        "FROM nvidia/cuda",
        "apt-get install",
        "UV_PIP_INSTALL_STARTED",
        "COPY app/ /app/",
        "COPY --from=weights",
        "ENV HF_HUB_CACHE=",
        "EXPOSE 8192",
        "HEALTHCHECK",
        "ENTRYPOINT",
    ];
    for pair in order.windows(2) {
        assert!(position(pair[0]) < position(pair[1]), "`{}` must come before `{}`\n{text}", pair[0], pair[1]);
    }
    // hf-cache: the 1 GiB blob gets a layer of its own, the small files one, the links one.
    assert_eq!(text.matches("COPY --from=weights").count(), 1 + 3, "{text}");
    assert!(!text.contains("ARG "), "no build args: nothing secret goes through ARG");
}

/// buildah 1.28 caches a `RUN --mount=type=bind` step by its text alone
/// (containers/buildah#5400): the install step names the requirements'
/// digest, so a changed requirement changes the step and a builder's cache
/// cannot keep the old install.
#[test]
fn the_install_step_changes_with_the_requirements() {
    let remote = OfflineWeights::new();
    let install_line = |extra: &str| {
        let dir = tempfile::tempdir().unwrap();
        let fixture = tools::repo_root().join("fixtures/cerebrium-cpu-fastapi");
        for file in ["cerebrium.toml", "main.py"] {
            std::fs::copy(fixture.join(file), dir.path().join(file)).unwrap();
        }
        let config = dir.path().join("cerebrium.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text + extra).unwrap();
        let loaded = imgbake::config::load(dir.path());
        let spec = loaded.spec.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics));
        let context = generate(&spec, &remote).unwrap();
        let line = context.dockerfile.lines().find(|l| l.contains("INSTALL_STARTED")).map(str::to_string);
        line.unwrap_or_else(|| panic!("no install step in\n{}", context.dockerfile))
    };
    let before = install_line("");
    assert!(before.contains("PIP_INSTALL_STARTED requirements="), "{before}");
    assert_eq!(before, install_line(""), "the same requirements give the same step");
    assert_ne!(before, install_line("cachetools = \"5.5.0\"\n"));
}

#[test]
fn volume_mode_context_has_manifest_hook_and_links_and_wraps_the_entrypoint() {
    let remote = OfflineWeights::new();
    // truss-bdn-weights: an hf:// and an s3:// source, both on the volume.
    let spec = load("truss-bdn-weights");
    assert_eq!(spec.weights.len(), 2);
    let context = generate(&spec, &remote).unwrap();
    assert!(context.dockerfile.contains(
        "ENTRYPOINT [\"/usr/local/bin/imgbake\",\"prefetch\",\"--manifest\",\"/etc/imgbake/weights.json\",\"--\""
    ));
    assert!(!context.dockerfile.contains("FROM scratch AS weights"), "volume mode bakes no weights");
    let manifest = context
        .files
        .iter()
        .find(|f| f.path == "imgbake/volume/etc/imgbake/weights.json")
        .expect("manifest in the context");
    let ContextSource::Bytes(bytes) = &manifest.source else { panic!("generated manifest") };
    let parsed = imgbake::weights::manifest::WeightsManifest::from_bytes(bytes).unwrap();
    assert_eq!(parsed.entries.len(), spec.weights.len());
    for entry in &parsed.entries {
        let link = format!("imgbake/volume/{}", entry.path.trim_start_matches('/'));
        let found = context.files.iter().find(|f| f.path == link);
        if entry.path != entry.volume_path {
            assert_eq!(found.map(|f| &f.source), Some(&ContextSource::Symlink(entry.volume_path.clone())));
        }
    }
}

#[test]
fn cli_writes_the_context_and_replaces_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ctx");
    let project = tools::repo_root().join("fixtures/cerebrium-local-weights");
    let cache = dir.path().join("cache");
    let args = ["dockerfile", project.to_str().unwrap(), "-o", out.to_str().unwrap(), "--cache-dir"];
    let run = || imgbake(&[&args[..], &[cache.to_str().unwrap()]].concat());
    let first = run();
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(stderr(&first).contains("warning[pinned-base]"), "{}", stderr(&first));
    for path in ["Dockerfile", ".dockerignore", "app/server.py", "weights/01-tiny/app/model_cache/tiny/config.json"] {
        assert!(out.join(path).is_file(), "{path}");
    }
    assert!(!out.join("app/weights").exists(), "excluded by the config");
    let original = std::fs::read(project.join("weights/tiny/model.safetensors")).unwrap();
    assert_eq!(std::fs::read(out.join("weights/01-tiny/app/model_cache/tiny/model.safetensors")).unwrap(), original);
    // A second run replaces the context it wrote (a stale file goes away).
    std::fs::write(out.join("app/stale.txt"), "old").unwrap();
    let second = run();
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert!(!out.join("app/stale.txt").exists());
    // A directory imgbake did not write is never replaced.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("keep.txt"), "mine").unwrap();
    let refused = imgbake(&["dockerfile", project.to_str().unwrap(), "-o", foreign.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("not written by `imgbake dockerfile`"), "{}", stderr(&refused));
    assert_eq!(std::fs::read_to_string(foreign.join("keep.txt")).unwrap(), "mine");
}

#[test]
fn dockerfile_path_uses_the_users_dockerfile_and_names_the_ignored_settings() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let users = "FROM debian:bookworm-slim\nCOPY . /srv/\nCMD python3 /srv/main.py\n";
    std::fs::write(project.join("my.Dockerfile"), users).unwrap();
    std::fs::write(project.join("main.py"), "print('hi')\n").unwrap();
    std::fs::write(
        project.join("cerebrium.toml"),
        "[cerebrium.deployment]\nname = \"own\"\nshell_commands = [\"echo hi\"]\n\
         [cerebrium.runtime.custom]\nport = 8000\ndockerfile_path = \"my.Dockerfile\"\n\
         [cerebrium.dependencies.pip]\nnumpy = \"latest\"\n",
    )
    .unwrap();
    let out = dir.path().join("ctx");
    let output = imgbake(&["dockerfile", project.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(std::fs::read_to_string(out.join("Dockerfile")).unwrap(), users);
    assert!(out.join("main.py").is_file());
    let text = stderr(&output);
    assert!(text.contains("these settings are ignored: shell_commands, dependencies.pip"), "{text}");
    // The lint advises on the user's own file but does not fail the command.
    assert!(text.contains("error[exec-form]"), "{text}");
}

#[test]
fn native_build_points_shell_commands_to_buildah() {
    let output = imgbake(&["build", "fixtures/cerebrium-shell-commands", "--base", "scratch"]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("shell_commands") && text.contains("--builder buildah"), "{text}");
}

#[test]
fn a_builder_that_is_not_installed_is_one_clear_error() {
    if tools::tool_path("buildctl").is_some() {
        return; // the check is about a missing builder
    }
    let dir = tempfile::tempdir().unwrap();
    let output_arg = format!("oci:{}:app", dir.path().join("out").display());
    let output = imgbake(&[
        "build",
        "fixtures/cerebrium-local-weights",
        "--builder",
        "buildkit",
        "--base",
        "127.0.0.1:1/base:1",
        "--output",
        &output_arg,
        "--cache-dir",
        dir.path().join("cache").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("`buildctl` is not installed"), "{}", stderr(&output));
}

// ------------------------------------------------------------ real builds

/// The loopback registry holding the debootstrap base, and its reference.
fn registry_with_base() -> (TestRegistry, String) {
    let registry = TestRegistry::start();
    let base_ref = format!("{}/base/bookworm-python:1", registry.host());
    let copied = tools::skopeo_copy(
        &format!("oci:{}:{}", base_image::base_layout().display(), base_image::BASE_TAG),
        &format!("docker://{base_ref}"),
        &["--dest-tls-verify=false"],
    );
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    (registry, base_ref)
}

/// `imgbake build` of a fixture on the registry base; `builder` none = native.
fn build_fixture(fixture: &str, builder: Option<&str>, host: &str, base: &str, dir: &Path) -> PathBuf {
    build_project(&tools::repo_root().join("fixtures").join(fixture), builder, host, base, dir, &[], &[])
}

fn build_project(
    project: &Path,
    builder: Option<&str>,
    host: &str,
    base: &str,
    dir: &Path,
    env: &[(&str, &str)],
    extra_args: &[&str],
) -> PathBuf {
    let layout = dir.join(format!("out-{}", builder.unwrap_or("native")));
    let output_arg = format!("oci:{}:app", layout.display());
    let cache = dir.join("cache");
    let mut args = vec!["build", project.to_str().unwrap(), "--base", base, "--insecure-registry", host];
    args.extend(["--output", &output_arg, "--cache-dir", cache.to_str().unwrap()]);
    if let Some(builder) = builder {
        args.extend(["--builder", builder]);
    }
    args.extend(extra_args);
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgbake"));
    command.args(&args).env("NO_COLOR", "1").envs(env.iter().copied());
    let output = tools::run_with_timeout(&mut command, BUILD_TIMEOUT);
    assert_eq!(output.status.code(), Some(0), "imgbake {args:?}\n{}", stderr(&output));
    layout
}

/// Starts the image's own entrypoint under runc and returns /health's JSON.
fn run_and_get_health(rootfs_bundle: &Path) -> serde_json::Value {
    let port = support::registry::free_port().to_string();
    tools::prepare_runc_bundle(rootfs_bundle, &[], &[("PORT", &port)], &[]);
    let container = tools::runc_run_detached(rootfs_bundle, &tools::unique_container_id("dockerfile"));
    let url = format!("http://127.0.0.1:{port}/health");
    let status = tools::wait_for_http(&url, Duration::from_secs(60));
    assert_eq!(status, 200, "{}", container.log_text());
    let client = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    client.get(&url).send().unwrap().json().unwrap()
}

/// One filesystem entry as the comparison sees it: kind, permission bits,
/// owner, and content digest or link target. Modification times are left
/// out (builders stamp their own).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir { mode: u32 },
    File { mode: u32, uid: u32, gid: u32, sha256: String },
    Link { target: String },
}

fn tree(root: &Path) -> BTreeMap<String, Node> {
    use std::os::unix::fs::MetadataExt;
    let mut nodes = BTreeMap::new();
    for item in walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name() {
        let item = item.unwrap();
        let relative = item.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if relative.is_empty() {
            continue;
        }
        let meta = item.path().symlink_metadata().unwrap();
        let node = if meta.file_type().is_symlink() {
            Node::Link { target: std::fs::read_link(item.path()).unwrap().to_string_lossy().into_owned() }
        } else if meta.is_dir() {
            Node::Dir { mode: meta.permissions().mode() & 0o7777 }
        } else if meta.is_file() {
            let sha256 = hex::encode(Sha256::digest(std::fs::read(item.path()).unwrap()));
            Node::File { mode: meta.permissions().mode() & 0o7777, uid: meta.uid(), gid: meta.gid(), sha256 }
        } else {
            continue;
        };
        nodes.insert(format!("/{relative}"), node);
    }
    nodes
}

/// What builders legitimately differ on, ignored by the comparison:
/// - modification times (not compared at all);
/// - `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`, `/run/.containerenv`:
///   buildah's chroot isolation bind-mounts these for RUN steps and may leave
///   empty mount points in a layer (runtimes mount their own at start);
/// - directory permission bits: the native build writes parent directories
///   with 0755 while a builder keeps the base's or the context's mode, and
///   neither is observable by the app as content.
const BUILDER_DIFFERENCES: [&str; 4] = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/run/.containerenv"];

/// Every difference between the two root filesystems, outside [`BUILDER_DIFFERENCES`].
fn tree_differences(native: &Path, built: &Path) -> Vec<String> {
    let strip = |mut nodes: BTreeMap<String, Node>| {
        nodes.retain(|path, _| !BUILDER_DIFFERENCES.contains(&path.as_str()));
        for node in nodes.values_mut() {
            if let Node::Dir { mode } = node {
                *mode = 0;
            }
        }
        nodes
    };
    let (native, built) = (strip(tree(native)), strip(tree(built)));
    let mut differences = Vec::new();
    for (path, node) in &native {
        match built.get(path) {
            None => differences.push(format!("only in the native image: {path} {node:?}")),
            Some(other) if other != node => differences.push(format!("{path}: native {node:?}, buildah {other:?}")),
            Some(_) => {}
        }
    }
    differences.extend(
        built.iter().filter(|(p, _)| !native.contains_key(*p)).map(|(p, n)| format!("only in buildah's: {p} {n:?}")),
    );
    differences
}

#[test]
fn tree_comparison_sees_content_mode_link_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for root in [&a, &b] {
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::write(root.join("app/same.txt"), "same").unwrap();
        std::fs::write(root.join("etc-hostname-like"), "x").unwrap();
    }
    assert!(tree_differences(&a, &b).is_empty());
    std::fs::write(b.join("app/same.txt"), "changed").unwrap();
    std::fs::write(a.join("app/mode.sh"), "").unwrap();
    std::fs::write(b.join("app/mode.sh"), "").unwrap();
    std::fs::set_permissions(b.join("app/mode.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("/x", a.join("link")).unwrap();
    std::os::unix::fs::symlink("/y", b.join("link")).unwrap();
    std::fs::write(b.join("extra"), "").unwrap();
    let found = tree_differences(&a, &b);
    assert_eq!(found.len(), 4, "{found:#?}");
}

#[test]
fn buildah_image_answers_like_the_native_one_and_holds_the_same_files() {
    if !["buildah", "skopeo", "umoci", "runc", "docker-registry", "debootstrap"].iter().all(|t| tools::require_tool(t))
    {
        return;
    }
    let (registry, base) = registry_with_base();
    let dir = tempfile::tempdir().unwrap();
    let fixture = "cerebrium-local-weights";
    let native = build_fixture(fixture, None, &registry.host(), &base, dir.path());
    let buildah = build_fixture(fixture, Some("buildah"), &registry.host(), &base, dir.path());

    // Same layer structure: base, app files, weights.
    let inspected = tools::skopeo_inspect(&format!("oci:{}:app", buildah.display()));
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 3, "{inspected:#}");
    let config = tools::skopeo_inspect_config(&format!("oci:{}:app", buildah.display()));
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["python3", "server.py"]));
    assert_eq!(config["config"]["WorkingDir"], "/app");
    assert!(config["config"]["ExposedPorts"]["8080/tcp"].is_object(), "{config:#}");

    let native_bundle = dir.path().join("native-bundle");
    let buildah_bundle = dir.path().join("buildah-bundle");
    tools::umoci_unpack(&native, "app", &native_bundle);
    tools::umoci_unpack(&buildah, "app", &buildah_bundle);
    let differences = tree_differences(&native_bundle.join("rootfs"), &buildah_bundle.join("rootfs"));
    assert!(differences.is_empty(), "{} differences:\n{}", differences.len(), differences.join("\n"));
    let entries = tree(&native_bundle.join("rootfs")).len();
    assert!(entries > 1000, "the comparison saw the whole base ({entries} entries)");

    let expected = hex::encode(Sha256::digest(
        std::fs::read(tools::repo_root().join("fixtures").join(fixture).join("weights/tiny/model.safetensors"))
            .unwrap(),
    ));
    let native_health = run_and_get_health(&native_bundle);
    let buildah_health = run_and_get_health(&buildah_bundle);
    assert_eq!(buildah_health["weights"]["model.safetensors"], expected.as_str(), "{buildah_health:#}");
    assert_eq!(buildah_health, native_health);
}

#[test]
fn shell_commands_run_in_the_buildah_build_and_show_in_the_image() {
    if !["buildah", "skopeo", "umoci", "runc", "docker-registry", "debootstrap"].iter().all(|t| tools::require_tool(t))
    {
        return;
    }
    let (registry, base) = registry_with_base();
    let dir = tempfile::tempdir().unwrap();
    // Also pushed: `--push` goes through `buildah push` to the (plain HTTP) loopback registry.
    let target = format!("{}/apps/shell-commands:1", registry.host());
    let project = tools::repo_root().join("fixtures/cerebrium-shell-commands");
    let push = ["--push", target.as_str()];
    let layout = build_project(&project, Some("buildah"), &registry.host(), &base, dir.path(), &[], &push);
    // Same content layers (buildah may compress a layer again on the way to a registry).
    let local = tools::skopeo_inspect_config(&format!("oci:{}:app", layout.display()));
    let remote = tools::skopeo_inspect_config(&format!("docker://{target}"));
    assert_eq!(remote["rootfs"]["diff_ids"], local["rootfs"]["diff_ids"], "the pushed image is the built one");
    assert_eq!(local["rootfs"]["diff_ids"].as_array().unwrap().len(), 5, "{local:#}");
    let bundle = dir.path().join("bundle");
    tools::umoci_unpack(&layout, "app", &bundle);
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("opt/prebuild/marker.txt")).unwrap(), "pre-build ran\n");
    assert_eq!(std::fs::read_to_string(rootfs.join("app/seen-at-build.txt")).unwrap(), "pre-build ran\n");
    let health = run_and_get_health(&bundle);
    assert_eq!(health["pre_build"], "pre-build ran");
    // The base's own interpreter wrote it during the build (bookworm: 3.11).
    assert!(health["build_info"]["python"].as_str().unwrap().starts_with("3.11."), "{health:#}");
}

#[test]
fn pip_dependencies_install_from_pypi_in_the_buildah_build_and_the_fastapi_app_answers() {
    if !["buildah", "skopeo", "umoci", "runc", "docker-registry", "debootstrap"].iter().all(|t| tools::require_tool(t))
    {
        return;
    }
    let (registry, base) = registry_with_base();
    let dir = tempfile::tempdir().unwrap();
    let layout = build_fixture("cerebrium-cpu-fastapi", Some("buildah"), &registry.host(), &base, dir.path());
    let bundle = dir.path().join("bundle");
    tools::umoci_unpack(&layout, "app", &bundle);
    // Pinned as written in cerebrium.toml (pydantic = "2.7.1"), installed for the base's Python.
    let site = bundle.join("rootfs/usr/local/lib/python3.11/dist-packages");
    assert!(site.join("pydantic-2.7.1.dist-info").is_dir(), "{:?}", std::fs::read_dir(&site).map(|d| d.count()));
    assert!(site.join("fastapi").is_dir() && site.join("uvicorn").is_dir());
    // Bytecode compiled at build time, as natively: no .pyc is written at the first import.
    assert!(site.join("fastapi/__pycache__").is_dir(), "no bytecode in the buildah image");
    assert!(!bundle.join("rootfs/tmp/imgbake/tools/uv").exists(), "the build's uv stays out of the image");
    // The image's own command, on a free port instead of the fixed 8000.
    let port = support::registry::free_port().to_string();
    let args = ["python3", "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", &port];
    tools::prepare_runc_bundle(&bundle, &args, &[], &[]);
    let container = tools::runc_run_detached(&bundle, &tools::unique_container_id("fastapi"));
    let status = tools::wait_for_http(&format!("http://127.0.0.1:{port}/health"), Duration::from_secs(60));
    assert_eq!(status, 200, "{}", container.log_text());
}

#[test]
fn hub_weights_in_volume_and_hf_cache_modes_build_with_buildah_into_the_native_tree() {
    if !["buildah", "skopeo", "umoci", "runc", "docker-registry", "debootstrap"].iter().all(|t| tools::require_tool(t))
    {
        return;
    }
    const TOKEN: &str = "hf_imgbakeDOCKERFILEtoken_51c2e";
    const TOKEN_VAR: &str = "IMGBAKE_TEST_HF_TOKEN";
    let dir = tempfile::tempdir().unwrap();
    let weights = random_bytes(1 << 20, 7);
    let files = vec![("config.json", b"{\"hidden_size\": 8}\n".to_vec()), ("model.safetensors", weights.clone())];
    let commit = hub::make_repo(&dir.path().join("hub"), "org/tiny", "main", &files);
    let hub = TestHub::start(&dir.path().join("hub"), Some(TOKEN));
    // One source twice: on the volume (manifest + hook + link) and baked in hf-cache layout.
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    std::fs::copy(tools::repo_root().join("fixtures/cerebrium-local-weights/server.py"), project.join("server.py"))
        .unwrap();
    std::fs::write(
        project.join("cerebrium.toml"),
        format!(
            "[cerebrium.deployment]\nname = \"hub-app\"\n\n[cerebrium.runtime.custom]\nport = 8080\n\
             entrypoint = [\"python3\", \"server.py\"]\n\n\
             [[imgbake.weights]]\nsource = \"hf://org/tiny@main\"\nmount = \"tiny\"\nmode = \"volume\"\nsecret = \"{TOKEN_VAR}\"\n\n\
             [[imgbake.weights]]\nsource = \"hf://org/tiny@main\"\nmount = \"cached\"\nmode = \"bake\"\nlayout = \"hf-cache\"\nsecret = \"{TOKEN_VAR}\"\n"
        ),
    )
    .unwrap();
    let (registry, base) = registry_with_base();
    let endpoint = hub.endpoint();
    let env = [("HF_ENDPOINT", endpoint.as_str()), (TOKEN_VAR, TOKEN)];
    let native = build_project(&project, None, &registry.host(), &base, dir.path(), &env, &[]);
    let buildah = build_project(&project, Some("buildah"), &registry.host(), &base, dir.path(), &env, &[]);

    let layers = |layout: &Path| tools::skopeo_inspect(&format!("oci:{}:app", layout.display()))["Layers"].clone();
    // base, app, hf-cache blobs, hf-cache links and refs, volume files: one layer each in both.
    assert_eq!(layers(&buildah).as_array().unwrap().len(), 5);
    assert_eq!(layers(&buildah).as_array().unwrap().len(), layers(&native).as_array().unwrap().len());
    let (native_bundle, buildah_bundle) = (dir.path().join("native-bundle"), dir.path().join("buildah-bundle"));
    tools::umoci_unpack(&native, "app", &native_bundle);
    tools::umoci_unpack(&buildah, "app", &buildah_bundle);
    let rootfs = buildah_bundle.join("rootfs");
    let differences = tree_differences(&native_bundle.join("rootfs"), &rootfs);
    assert!(differences.is_empty(), "{} differences:\n{}", differences.len(), differences.join("\n"));
    let snapshot =
        rootfs.join(format!("app/model_cache/cached/models--org--tiny/snapshots/{commit}/model.safetensors"));
    assert_eq!(std::fs::read(&snapshot).unwrap(), weights, "hf-cache link resolves to the baked blob");
    assert_eq!(
        std::fs::read_link(rootfs.join("app/model_cache/tiny")).unwrap(),
        Path::new("/persistent-storage/imgbake/tiny")
    );
    for blob in std::fs::read_dir(buildah.join("blobs/sha256")).unwrap() {
        let bytes = std::fs::read(blob.unwrap().path()).unwrap();
        assert!(!bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()), "the token reached the image");
    }

    // The wrapped entrypoint fills an empty volume from the hub, then the app loads the weights.
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    let port = support::registry::free_port().to_string();
    let run_env = [("PORT", port.as_str()), ("HF_ENDPOINT", endpoint.as_str()), (TOKEN_VAR, TOKEN)];
    let mount = tools::BindMount::read_write(&volume, "/persistent-storage");
    tools::prepare_runc_bundle(&buildah_bundle, &[], &run_env, &[mount]);
    let container = tools::runc_run_detached(&buildah_bundle, &tools::unique_container_id("dockerfile-volume"));
    let url = format!("http://127.0.0.1:{port}/health");
    assert_eq!(tools::wait_for_http(&url, Duration::from_secs(60)), 200, "{}", container.log_text());
    let client = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    let body: serde_json::Value = client.get(&url).send().unwrap().json().unwrap();
    assert_eq!(body["weights"]["model.safetensors"], hex::encode(Sha256::digest(&weights)).as_str(), "{body:#}");
}

#[test]
fn a_weights_symlink_leaving_its_directory_is_refused_as_natively() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("weights/tiny")).unwrap();
    std::fs::write(project.join("weights/tiny/config.json"), "{}").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", project.join("weights/tiny/leak.bin")).unwrap();
    std::fs::write(
        project.join("cerebrium.toml"),
        "[cerebrium.deployment]\nname = \"leak\"\nexclude = [\".*\", \"weights/\"]\n\
         [[imgbake.weights]]\nsource = \"./weights/tiny\"\nmount = \"tiny\"\nmode = \"bake\"\n",
    )
    .unwrap();
    let output = imgbake(&["dockerfile", project.to_str().unwrap(), "-o", dir.path().join("ctx").to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("is a symlink that leaves the weights directory"), "{}", stderr(&output));
    assert!(!dir.path().join("ctx").exists(), "nothing is written on error");
}
