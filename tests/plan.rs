//! `imgbake plan` end to end: the fixtures' plans in text, Markdown and JSON
//! (snapshots), the HTML page rendered by headless Chromium, `--calibrate`
//! writing a profile that a second run uses, and `build` with `mode = "auto"`
//! doing what `plan` printed. Weights sizes come from the loopback hub.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::data::random_bytes;
use support::hub::TestHub;
use support::tools;

const PLAN_TIMEOUT: Duration = Duration::from_secs(120);
/// `--calibrate` compresses and unpacks 32 MiB several times; slow under load.
const CALIBRATE_TIMEOUT: Duration = Duration::from_secs(300);

/// A profile with the hook's size fixed, so snapshots do not follow the size
/// of the test binary.
const FIXED_PROFILE: &str = "[params]\nprefetch_hook_bytes = 25000000\n";

/// Writes one hub commit (`ROOT/org/name/<revision>/…`) at a pinned revision.
fn hub_repo(root: &Path, repo: &str, revision: &str, files: &[(&str, Vec<u8>)]) {
    for (path, data) in files {
        let file = root.join(repo).join(revision).join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, data).unwrap();
    }
}

/// bf16 values like trained weights (about normal, σ ≈ 0.02), so the sampled
/// compressibility is realistic: exponent bytes repeat, mantissas do not.
fn bf16_like(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let value = (uniform() + uniform() + uniform() + uniform() - 2.0) * 0.035;
        out.extend_from_slice(&((value.to_bits() >> 16) as u16).to_le_bytes());
    }
    out
}

/// A safetensors file of `size` bytes: a header, 4 MiB of bf16-like data,
/// a hole (sparse: nothing is written, the hub hashes zeros), and 1 MiB of
/// bf16-like data around the middle, where imgbake samples.
fn sparse_safetensors(path: &Path, size: u64, seed: u64) {
    use std::io::{Seek, SeekFrom, Write};
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let header = br#"{"weight":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}"#;
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(&(header.len() as u64).to_le_bytes()).unwrap();
    file.write_all(header).unwrap();
    file.write_all(&bf16_like(4 << 20, seed)).unwrap();
    file.set_len(size).unwrap();
    file.seek(SeekFrom::Start(size / 2 - (512 << 10))).unwrap();
    file.write_all(&bf16_like(1 << 20, seed + 100)).unwrap();
}

/// The repos the fixtures name, with their real file sizes (sparse files).
fn fixture_hub(root: &Path) -> TestHub {
    let json = |text: &str| text.as_bytes().to_vec();
    let sdxl = "stabilityai/stable-diffusion-xl-base-1.0";
    let sdxl_revision = "462165984030d82259a11f4367a4eed129e94a7b";
    hub_repo(
        root,
        sdxl,
        sdxl_revision,
        &[
            ("model_index.json", json("{\"_class_name\": \"StableDiffusionXLPipeline\"}\n")),
            ("unet/config.json", json("{\"sample_size\": 128}\n")),
            ("vae/config.json", json("{\"scaling_factor\": 0.13025}\n")),
        ],
    );
    for (path, size, seed) in [
        ("unet/diffusion_pytorch_model.fp16.safetensors", 5_135_149_760, 1),
        ("text_encoder_2/model.fp16.safetensors", 1_389_382_176, 2),
        ("text_encoder/model.fp16.safetensors", 246_144_152, 3),
        ("vae/diffusion_pytorch_model.fp16.safetensors", 167_335_342, 4),
        // Not matched by the fixtures' allow_patterns: listed, never counted
        // (1 GB here, not the real 10 GB: the hub hashes every listed file).
        ("unet/diffusion_pytorch_model.safetensors", 1_000_000_000, 5),
    ] {
        sparse_safetensors(&root.join(sdxl).join(sdxl_revision).join(path), size, seed);
    }
    let vae = "madebyollin/sdxl-vae-fp16-fix";
    let vae_revision = "207b116dae70ace3637169f1ddd2434b91b3a8cd";
    hub_repo(root, vae, vae_revision, &[("config.json", json("{}\n"))]);
    sparse_safetensors(&root.join(vae).join(vae_revision).join("diffusion_pytorch_model.safetensors"), 334_643_268, 6);
    let bert = "google-bert/bert-base-uncased";
    let bert_revision = "86b5e0934494bd15c9632b12f734a8a67f723594";
    hub_repo(
        root,
        bert,
        bert_revision,
        &[
            ("config.json", json("{\"hidden_size\": 768}\n")),
            ("vocab.txt", json("[PAD]\n[UNK]\n")),
            ("tf_model.h5", random_bytes(1 << 20, 7)),
        ],
    );
    sparse_safetensors(&root.join(bert).join(bert_revision).join("model.safetensors"), 440_449_768, 8);
    TestHub::start(root, None)
}

fn imgbake(args: &[&str], hub: Option<&TestHub>) -> Output {
    let timeout = if args.contains(&"--calibrate") { CALIBRATE_TIMEOUT } else { PLAN_TIMEOUT };
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgbake"));
    command.args(args).env_remove("HF_TOKEN").env_remove("HUGGING_FACE_HUB_TOKEN");
    match hub {
        Some(hub) => command.env("HF_ENDPOINT", hub.endpoint()),
        None => command.env("HF_ENDPOINT", "http://127.0.0.1:9"),
    };
    tools::run_with_timeout(&mut command, timeout)
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn fixed_profile(dir: &Path) -> PathBuf {
    let path = dir.join("fixed.toml");
    std::fs::write(&path, FIXED_PROFILE).unwrap();
    path
}

fn plan_of(fixture: &str, format: &str, hub: &TestHub, profile: &Path) -> String {
    let path = tools::repo_root().join("fixtures").join(fixture);
    let args = ["plan", path.to_str().unwrap(), "--format", format, "--skip-base-lookup", "--profile"];
    let mut all: Vec<&str> = args.to_vec();
    all.push(profile.to_str().unwrap());
    stdout(&imgbake(&all, Some(hub)))
}

#[test]
fn fixture_plans_in_text_markdown_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let hub = fixture_hub(&dir.path().join("hub"));
    let profile = fixed_profile(dir.path());
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&dir.path().display().to_string()), "[TMP]");
    settings.bind(|| {
        for fixture in ["cerebrium-gpu-weights", "truss-bake"] {
            let text = plan_of(fixture, "text", &hub, &profile);
            for line in text.lines() {
                assert!(line.chars().count() <= 100, "{fixture}: line over 100 columns: {line}");
            }
            insta::assert_snapshot!(format!("{fixture}-text"), text);
            insta::assert_snapshot!(format!("{fixture}-markdown"), plan_of(fixture, "markdown", &hub, &profile));
            let mut json: serde_json::Value = serde_json::from_str(&plan_of(fixture, "json", &hub, &profile)).unwrap();
            assert_eq!(json["schema"], "imgbake.plan/v1");
            // The hook's size is this machine's imgbake binary (or $IMGBAKE_HOOK_BINARY).
            for layer in json["layers"].as_array_mut().unwrap() {
                for path in layer["paths"].as_array_mut().into_iter().flatten() {
                    if path[0] == "usr/local/bin/imgbake" {
                        path[1] = "[hook bytes]".into();
                    }
                }
            }
            insta::assert_json_snapshot!(format!("{fixture}-json"), json);
        }
    });
}

/// The fixture with SDXL on a Kubernetes cluster with image volumes: the
/// plan shows the artifact option beside bake and volume.
#[test]
fn a_kubernetes_plan_weighs_the_artifact_option() {
    let dir = tempfile::tempdir().unwrap();
    let hub = fixture_hub(&dir.path().join("hub"));
    let profile = dir.path().join("kubernetes.toml");
    std::fs::write(&profile, format!("base = \"kubernetes\"\n{FIXED_PROFILE}")).unwrap();
    let text = plan_of("cerebrium-gpu-weights", "text", &hub, &profile);
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "line over 100 columns: {line}");
    }
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&dir.path().display().to_string()), "[TMP]");
    settings.bind(|| insta::assert_snapshot!("cerebrium-gpu-weights-kubernetes-text", text));
    let markdown = plan_of("cerebrium-gpu-weights", "markdown", &hub, &profile);
    assert!(markdown.contains("| | bake | volume | artifact | auto |\n|---|---:|---:|---:|---:|\n"), "{markdown}");
}

/// A project with local weights in `mode = "artifact"`.
fn artifact_project(dir: &Path) -> PathBuf {
    let project = dir.join("artifact");
    std::fs::create_dir_all(project.join("weights")).unwrap();
    std::fs::write(project.join("weights/model.safetensors"), random_bytes(1 << 20, 3)).unwrap();
    std::fs::copy(tools::repo_root().join("fixtures/cerebrium-local-weights/server.py"), project.join("server.py"))
        .unwrap();
    std::fs::write(
        project.join("cerebrium.toml"),
        "[cerebrium.deployment]\nname = \"artifact\"\nexclude = [\"weights/\"]\n\n[cerebrium.runtime.custom]\n\
         port = 8080\nentrypoint = [\"python3\", \"server.py\"]\n\n\
         [[imgbake.weights]]\nsource = \"./weights\"\nmount = \"m\"\nmode = \"artifact\"\n",
    )
    .unwrap();
    project
}

#[test]
fn an_explicit_artifact_on_a_target_without_image_volumes_is_kept_and_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let project = artifact_project(dir.path());
    let plan = |extra: &[&str]| {
        let mut args = vec!["plan", project.to_str().unwrap(), "--base", "scratch"];
        args.extend(extra);
        stdout(&imgbake(&args, None))
    };
    let text = plan(&[]);
    assert!(text.contains("  artifact: imgbake.weights[0] (1.0 MB); as a ModelPack artifact"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&plan(&["--format", "json"])).unwrap();
    let notes: Vec<&str> = json["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect();
    let named: Vec<&&str> = notes.iter().filter(|n| n.contains("do not mount image volumes")).collect();
    assert_eq!(named.len(), 1, "{notes:?}");
    assert!(
        named[0].starts_with("imgbake.weights[0]: mode = \"artifact\", but the cerebrium profile's nodes do not mount")
            && named[0].ends_with("(plan with --profile kubernetes)"),
        "{notes:?}"
    );
    assert_eq!(json["decisions"][0]["chosen"], "artifact");
    let kubernetes = plan(&["--profile", "kubernetes"]);
    assert!(kubernetes.contains("  artifact: imgbake.weights[0]"), "{kubernetes}");
    assert!(!kubernetes.contains("do not mount image volumes"), "{kubernetes}");
}

#[test]
fn a_volume_that_cannot_be_built_is_refused_by_plan_as_by_build() {
    // truss-volume keeps model_cache on a volume, but has no entrypoint for the hook to wrap.
    let dir = tempfile::tempdir().unwrap();
    let fixture = tools::repo_root().join("fixtures/truss-volume");
    let plan = imgbake(&["plan", fixture.to_str().unwrap(), "--skip-base-lookup"], None);
    let out = format!("oci:{}:app", dir.path().join("out").display());
    let build = imgbake(&["build", fixture.to_str().unwrap(), "--base", "scratch", "--output", &out], None);
    for output in [&plan, &build] {
        assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let line = |output: &Output| String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or_default().to_string();
    assert!(line(&plan).contains("wraps the config's entrypoint with the prefetch hook, but the config has none"));
    assert_eq!(line(&plan), line(&build));
}

/// insta filters are regexes; temp paths contain no special characters but dots.
fn regex_escape(text: &str) -> String {
    text.replace('.', "\\.")
}

#[test]
fn the_text_report_names_the_unresolved_dependencies_and_the_default_base() {
    let dir = tempfile::tempdir().unwrap();
    let hub = fixture_hub(&dir.path().join("hub"));
    let text = plan_of("cerebrium-gpu-weights", "text", &hub, &fixed_profile(dir.path()));
    assert!(text.contains("dependencies not resolved"), "{text}");
    assert!(text.contains("profile default used"), "{text}");
    // The local directory is baked; the 6.9 GB hf-cache source goes on the volume.
    assert!(text.contains("bake: imgbake.weights[1]"), "{text}");
    assert!(text.contains("volume: imgbake.weights[0]"), "{text}");
}

#[test]
fn html_report_renders_in_headless_chromium() {
    if !tools::require_tool("chromium") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = fixture_hub(&dir.path().join("hub"));
    let page = dir.path().join("plan.html");
    let fixture = tools::repo_root().join("fixtures/cerebrium-gpu-weights");
    let profile = fixed_profile(dir.path());
    let output = imgbake(
        &[
            "plan",
            fixture.to_str().unwrap(),
            "--format",
            "html",
            "--skip-base-lookup",
            "--profile",
            profile.to_str().unwrap(),
            "-o",
            page.to_str().unwrap(),
        ],
        Some(&hub),
    );
    stdout(&output);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<svg") && !html.contains("<script"), "self-contained, no script");
    let shot = dir.path().join("shot.png");
    let mut chromium = Command::new("chromium");
    chromium
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,1400"])
        .arg(format!("--user-data-dir={}", dir.path().join("chromium-profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()));
    tools::run_checked(&mut chromium, Duration::from_secs(90));
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let colours: std::collections::BTreeSet<&[u8]> =
        pixels[..info.buffer_size()].chunks(channels).map(|p| &p[..3.min(channels)]).collect();
    // White page, black text, and the six term colours of the bars at least.
    assert!(colours.len() >= 8, "the screenshot looks blank: {} distinct colours", colours.len());
    let bar_blue = [0x1f_u8, 0x77, 0xb4];
    assert!(colours.contains(&bar_blue[..]), "the chart's first series colour is missing from the screenshot");
}

#[test]
fn calibrate_writes_a_profile_that_a_second_run_uses() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("calibrated.toml");
    let fixture = tools::repo_root().join("fixtures/cerebrium-local-weights");
    // Cold reads up to 256 MiB: the 1 GiB and 4 GiB samples would add
    // seconds of disk to a test about the profile file.
    let output = imgbake(
        &[
            "plan",
            fixture.to_str().unwrap(),
            "--calibrate",
            "--calibrate-read-max",
            "256",
            "-o",
            profile.to_str().unwrap(),
        ],
        None,
    );
    stdout(&output);
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(text.contains("unpack_gzip = ") && text.contains("measured by `imgbake plan --calibrate`"), "{text}");
    let read_source = text.lines().find(|l| l.starts_with("disk_read = \"")).unwrap_or_default();
    assert!(read_source.contains("at 32 MiB") && read_source.contains("256 MiB"), "{read_source}");
    assert!(!read_source.contains("1024 MiB") && !read_source.contains("4096 MiB"), "{read_source}");
    let json = stdout(&imgbake(
        &[
            "plan",
            fixture.to_str().unwrap(),
            "--format",
            "json",
            "--skip-base-lookup",
            "--profile",
            profile.to_str().unwrap(),
        ],
        None,
    ));
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(plan["profile"], "calibrated");
    let assumptions = plan["assumptions"].as_array().unwrap();
    for key in ["unpack_gzip", "unpack_zstd", "unpack_none", "disk_read", "disk_write", "sha256"] {
        let found = assumptions.iter().find(|a| a["key"] == key).unwrap();
        assert!(found["source"].as_str().unwrap().contains("measured"), "{key}: {found}");
        assert!(found["value"].as_f64().unwrap() > 1e6, "{key}: {found}");
    }
    // Volume read cannot be measured here: it keeps the platform's documented number.
    let volume = assumptions.iter().find(|a| a["key"] == "volume_read").unwrap();
    assert_eq!(volume["value"], 2e9);
}

#[test]
fn a_bad_profile_file_names_its_line_and_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("bad.toml");
    std::fs::write(&profile, "[params]\nvolume_raed = 1e9\n").unwrap();
    let fixture = tools::repo_root().join("fixtures/cerebrium-local-weights");
    let output = imgbake(
        &["plan", fixture.to_str().unwrap(), "--skip-base-lookup", "--profile", profile.to_str().unwrap()],
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:2:1: unknown parameter `volume_raed` (did you mean `volume_read`?)"), "{stderr}");
}

/// A project with one `hf://org/<repo>@main` source in `mode = "auto"`.
fn auto_project(dir: &Path, repo: &str) -> PathBuf {
    let project = dir.join(repo);
    std::fs::create_dir_all(&project).unwrap();
    std::fs::copy(tools::repo_root().join("fixtures/cerebrium-local-weights/server.py"), project.join("server.py"))
        .unwrap();
    let config = format!(
        "[cerebrium.deployment]\nname = \"auto-{repo}\"\n\n[cerebrium.runtime.custom]\nport = 8080\n\
         entrypoint = [\"python3\", \"server.py\"]\n\n[cerebrium.scaling]\nmin_replicas = 0\nmax_replicas = 2\n\n\
         [imgbake]\nweights_updates_per_week = 1\n\n\
         [[imgbake.weights]]\nsource = \"hf://org/{repo}@main\"\nmount = \"{repo}\"\nmode = \"auto\"\n"
    );
    std::fs::write(project.join("cerebrium.toml"), config).unwrap();
    project
}

/// `plan`'s chosen placement of the only source, and what `build` made.
fn plan_and_build(dir: &Path, hub: &TestHub, repo: &str) -> (String, Vec<String>) {
    plan_and_build_with(dir, hub, repo, &[])
}

/// [`plan_and_build`] with `extra` flags (e.g. `--profile FILE`) given to both.
fn plan_and_build_with(dir: &Path, hub: &TestHub, repo: &str, extra: &[&str]) -> (String, Vec<String>) {
    let project = auto_project(dir, repo);
    let mut plan_args = vec!["plan", project.to_str().unwrap(), "--format", "json", "--base", "scratch"];
    plan_args.extend(extra);
    let plan = stdout(&imgbake(&plan_args, Some(hub)));
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let chosen = plan["decisions"][0]["chosen"].as_str().unwrap().to_string();
    let output = format!("oci:{}:app", dir.join(format!("out-{repo}")).display());
    let cache = dir.join("cache");
    let mut build_args = vec![
        "build",
        "--json",
        project.to_str().unwrap(),
        "--base",
        "scratch",
        "--output",
        &output,
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    build_args.extend(extra);
    let build = stdout(&imgbake(&build_args, Some(hub)));
    let build: serde_json::Value = serde_json::from_str(&build).unwrap();
    let layers = build["layers"].as_array().unwrap().iter().map(|l| l["what"].as_str().unwrap().to_string()).collect();
    (chosen, layers)
}

#[test]
fn build_with_mode_auto_does_what_plan_printed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    // Small weights: baking them costs less than pulling the hook layer.
    hub_repo(
        &root,
        "org/small",
        "1111111111111111111111111111111111111111",
        &[("model.safetensors", random_bytes(2 << 20, 9))],
    );
    // 6 GB (sparse: nothing is written or downloaded): on a volume.
    hub_repo(&root, "org/large", "2222222222222222222222222222222222222222", &[("config.json", b"{}\n".to_vec())]);
    let large = root.join("org/large/2222222222222222222222222222222222222222/model.safetensors");
    std::fs::File::create(&large).unwrap().set_len(6_000_000_000).unwrap();
    for (repo, commit) in
        [("small", "1111111111111111111111111111111111111111"), ("large", "2222222222222222222222222222222222222222")]
    {
        let refs = root.join("org").join(repo).join("refs");
        std::fs::create_dir_all(&refs).unwrap();
        std::fs::write(refs.join("main"), commit).unwrap();
    }
    let hub = TestHub::start(&root, None);

    let (chosen, layers) = plan_and_build(dir.path(), &hub, "small");
    assert_eq!(chosen, "bake");
    assert!(layers.iter().any(|l| l == "weights small"), "{layers:?}");
    assert!(!layers.iter().any(|l| l.contains("prefetch hook")), "{layers:?}");

    let (chosen, layers) = plan_and_build(dir.path(), &hub, "large");
    assert_eq!(chosen, "volume");
    assert!(layers.iter().any(|l| l.contains("prefetch hook")), "{layers:?}");
    assert!(!layers.iter().any(|l| l.starts_with("weights large")), "{layers:?}");
}

/// On a cluster with image volumes, a warm pool's weights go to an
/// artifact (each app deploy restarts the replicas on nodes that keep it),
/// and build makes the artifact that plan chose.
#[test]
fn on_kubernetes_auto_picks_the_artifact_and_build_makes_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let commit = "4444444444444444444444444444444444444444";
    hub_repo(&root, "org/warm", commit, &[("model.safetensors", random_bytes(2 << 20, 9))]);
    std::fs::create_dir_all(root.join("org/warm/refs")).unwrap();
    std::fs::write(root.join("org/warm/refs/main"), commit).unwrap();
    let hub = TestHub::start(&root, None);
    let project = auto_project(dir.path(), "warm");
    let config = std::fs::read_to_string(project.join("cerebrium.toml")).unwrap();
    std::fs::write(project.join("cerebrium.toml"), config.replace("min_replicas = 0", "min_replicas = 2")).unwrap();

    let plan = stdout(&imgbake(
        &["plan", project.to_str().unwrap(), "--format", "json", "--base", "scratch", "--profile", "kubernetes"],
        Some(&hub),
    ));
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let decision = &plan["decisions"][0];
    assert_eq!(decision["chosen"], "artifact", "{decision}");
    assert!(decision["artifact_seconds_per_week"].as_f64() < decision["bake_seconds_per_week"].as_f64());
    let names: Vec<&str> = plan["options"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bake", "volume", "artifact", "auto"]);

    let output = format!("oci:{}:app", dir.path().join("out").display());
    let cache = dir.path().join("cache");
    let args = ["build", "--json", project.to_str().unwrap(), "--base", "scratch", "--output", &output];
    let mut args = args.to_vec();
    args.extend(["--cache-dir", cache.to_str().unwrap(), "--profile", "kubernetes"]);
    let build: serde_json::Value = serde_json::from_str(&stdout(&imgbake(&args, Some(&hub)))).unwrap();
    let layers: Vec<&str> = build["layers"].as_array().unwrap().iter().map(|l| l["what"].as_str().unwrap()).collect();
    assert!(!layers.iter().any(|l| l.starts_with("weights") || l.contains("prefetch hook")), "{layers:?}");
    assert_eq!(build["artifacts"].as_array().map(Vec::len), Some(1), "{build}");
    // Without image volumes the same project is never an artifact.
    let plan =
        stdout(&imgbake(&["plan", project.to_str().unwrap(), "--format", "json", "--base", "scratch"], Some(&hub)));
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_ne!(plan["decisions"][0]["chosen"], "artifact");
    assert_eq!(plan["options"].as_array().unwrap().len(), 3);
}

#[test]
fn build_profile_decides_auto_as_plan_profile_does() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let commit = "3333333333333333333333333333333333333333";
    hub_repo(&root, "org/small", commit, &[("model.safetensors", random_bytes(2 << 20, 9))]);
    std::fs::create_dir_all(root.join("org/small/refs")).unwrap();
    std::fs::write(root.join("org/small/refs/main"), commit).unwrap();
    let hub = TestHub::start(&root, None);

    // With the target's built-in profile, 2 MiB is baked (see above). A
    // profile whose registry crawls at 1 kB/s and whose hook is 1 kB makes
    // the volume the cheaper start, and build must follow the same profile.
    let (chosen, layers) = plan_and_build(dir.path(), &hub, "small");
    assert_eq!(chosen, "bake", "{layers:?}");
    let profile = dir.path().join("slow-registry.toml");
    std::fs::write(
        &profile,
        "[params]\nprefetch_hook_bytes = 1000\nregistry_bandwidth = 1000\nlayer_bandwidth = 1000\n",
    )
    .unwrap();
    let (chosen, layers) = plan_and_build_with(dir.path(), &hub, "small", &["--profile", profile.to_str().unwrap()]);
    assert_eq!(chosen, "volume");
    assert!(layers.iter().any(|l| l.contains("prefetch hook")), "{layers:?}");
    assert!(!layers.iter().any(|l| l.starts_with("weights small")), "{layers:?}");

    // A profile that does not parse stops the build before anything is built.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[params]\nregistry_bandwidth = \"fast\"\n").unwrap();
    let project = auto_project(dir.path(), "small");
    let output = imgbake(&["build", project.to_str().unwrap(), "--profile", bad.to_str().unwrap()], Some(&hub));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:2:"), "{stderr}");
}

/// A project with a local weights folder of three 2 MiB files split into a layer each.
fn split_project(dir: &Path) -> PathBuf {
    let project = dir.join("split");
    let weights = project.join("weights");
    std::fs::create_dir_all(&weights).unwrap();
    for (index, name) in ["a.safetensors", "b.safetensors", "c.safetensors"].iter().enumerate() {
        std::fs::write(weights.join(name), random_bytes(2 << 20, 20 + index as u64)).unwrap();
    }
    std::fs::write(weights.join("config.json"), b"{\"layers\": 3}\n").unwrap();
    std::fs::copy(tools::repo_root().join("fixtures/cerebrium-local-weights/server.py"), project.join("server.py"))
        .unwrap();
    let config = "[cerebrium.deployment]\nname = \"split\"\nexclude = [\"weights/\"]\n\n\
                  [cerebrium.runtime.custom]\nport = 8080\nentrypoint = [\"python3\", \"server.py\"]\n\n\
                  [imgbake]\nweights_split_mib = 1\n\n\
                  [[imgbake.weights]]\nsource = \"./weights\"\nmount = \"m\"\nmode = \"bake\"\n";
    std::fs::write(project.join("cerebrium.toml"), config).unwrap();
    project
}

fn build_json(project: &Path, dir: &Path, extra: &[&str]) -> serde_json::Value {
    let output = format!("oci:{}:app", dir.join("out").display());
    let cache = dir.join("cache");
    let mut args = vec!["build", "--json", project.to_str().unwrap(), "--output", &output];
    args.extend(["--cache-dir", cache.to_str().unwrap()]);
    args.extend(extra);
    serde_json::from_str(&stdout(&imgbake(&args, None))).unwrap()
}

#[test]
fn planned_layers_match_the_layers_build_writes() {
    let dir = tempfile::tempdir().unwrap();
    let project = split_project(dir.path());
    let plan = stdout(&imgbake(&["plan", project.to_str().unwrap(), "--format", "json", "--base", "scratch"], None));
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let planned = plan["options"][2]["layers"].as_array().unwrap().clone();
    let built = build_json(&project, dir.path(), &["--base", "scratch"]);
    let built = built["layers"].as_array().unwrap();
    let names = |layers: &[serde_json::Value]| {
        layers.iter().map(|l| l["what"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    // Same layers, same order: app files, the small files, then each large file alone.
    assert_eq!(names(&planned), names(built));
    for (plan_layer, built_layer) in planned.iter().zip(built) {
        let what = plan_layer["what"].as_str().unwrap();
        let estimate = plan_layer["uncompressed"].as_f64().unwrap();
        let actual = built_layer["uncompressed_size"].as_f64().unwrap();
        // Build adds directory entries the estimate leaves out: a few 512-byte headers.
        assert!((estimate - actual).abs() <= 4096.0 + actual * 0.01, "{what}: planned {estimate}, built {actual}");
        if what.starts_with("weights m ") && what != "weights m 1/4" {
            // Random bytes: both keep them uncompressed (`compression = "auto"`).
            assert_eq!(plan_layer["codec"], "none", "{what}");
            assert!(built_layer["media_type"].as_str().unwrap().ends_with(".tar"), "{built_layer}");
        }
    }
}

#[test]
fn base_sizes_come_from_an_oci_layout_and_a_registry() {
    if !tools::require_tool("docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let project = split_project(dir.path());
    let registry = support::registry::TestRegistry::start();
    let host = registry.host();
    let reference = format!("{host}/plan-base:1");
    let built =
        build_json(&project, dir.path(), &["--base", "scratch", "--push", &reference, "--insecure-registry", &host]);
    let sizes: Vec<u64> = built["layers"].as_array().unwrap().iter().map(|l| l["size"].as_u64().unwrap()).collect();
    let layout = format!("oci:{}:app", dir.path().join("out").display());
    for (base, extra, source) in [
        (layout.as_str(), vec![], "OCI layout manifest"),
        (reference.as_str(), vec!["--insecure-registry", host.as_str()], "registry manifest"),
    ] {
        let mut args = vec!["plan", project.to_str().unwrap(), "--format", "json", "--base", base];
        args.extend(extra);
        let plan: serde_json::Value = serde_json::from_str(&stdout(&imgbake(&args, None))).unwrap();
        assert!(plan["base"]["source"].as_str().unwrap().starts_with(source), "{}", plan["base"]);
        let planned: Vec<u64> =
            plan["base"]["layers"].as_array().unwrap().iter().map(|l| l["compressed"].as_u64().unwrap()).collect();
        assert_eq!(planned, sizes, "{base}: the base's blob sizes are exact");
    }
    // An unreachable registry is said, and the profile's default is used.
    let plan = stdout(&imgbake(
        &["plan", project.to_str().unwrap(), "--format", "json", "--base", "127.0.0.1:9/none:1"],
        None,
    ));
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert!(plan["base"]["source"].as_str().unwrap().contains("unreachable"), "{}", plan["base"]);
    assert!(plan["notes"].to_string().contains("default_base_compressed"), "{}", plan["notes"]);
}

#[test]
fn calibrate_measures_a_registry_pull() {
    if !tools::require_tool("docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let project = split_project(dir.path());
    let registry = support::registry::TestRegistry::start();
    let host = registry.host();
    let reference = format!("{host}/calibrate:1");
    build_json(&project, dir.path(), &["--base", "scratch", "--push", &reference, "--insecure-registry", &host]);
    let profile = dir.path().join("with-registry.toml");
    stdout(&imgbake(
        &[
            "plan",
            project.to_str().unwrap(),
            "--calibrate",
            "--calibrate-read-max",
            "256",
            "--registry",
            &reference,
            "--insecure-registry",
            &host,
            "-o",
            profile.to_str().unwrap(),
        ],
        None,
    ));
    let text = std::fs::read_to_string(&profile).unwrap();
    for key in ["registry_bandwidth", "layer_bandwidth"] {
        let source = text.lines().find(|l| l.starts_with(&format!("{key} = \""))).unwrap_or_default();
        assert!(source.contains("measured") && source.contains(&reference), "{key}: {text}");
    }
}

#[test]
fn planned_hf_cache_layers_match_the_layers_build_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let commit = "4444444444444444444444444444444444444444";
    hub_repo(
        &root,
        "org/cached",
        commit,
        &[
            ("config.json", b"{}\n".to_vec()),
            ("b.safetensors", random_bytes(3 << 20, 31)),
            ("a.safetensors", random_bytes(2 << 20, 32)),
        ],
    );
    let hub = TestHub::start(&root, None);
    let project = dir.path().join("cached");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("app.py"), "print('hi')\n").unwrap();
    let config = format!(
        "[cerebrium.deployment]\nname = \"cached\"\n\n[cerebrium.runtime.custom]\nport = 8080\n\
         entrypoint = [\"python3\", \"app.py\"]\n\n[imgbake]\nweights_split_mib = 1\n\n\
         [[imgbake.weights]]\nsource = \"hf://org/cached@{commit}\"\nmount = \"c\"\nmode = \"bake\"\nlayout = \"hf-cache\"\n"
    );
    std::fs::write(project.join("cerebrium.toml"), config).unwrap();
    let plan =
        stdout(&imgbake(&["plan", project.to_str().unwrap(), "--format", "json", "--base", "scratch"], Some(&hub)));
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let output = format!("oci:{}:app", dir.path().join("out").display());
    let cache = dir.path().join("cache");
    let built = stdout(&imgbake(
        &[
            "build",
            "--json",
            project.to_str().unwrap(),
            "--base",
            "scratch",
            "--output",
            &output,
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        Some(&hub),
    ));
    let built: serde_json::Value = serde_json::from_str(&built).unwrap();
    let layers = |list: &serde_json::Value, size: &str| -> Vec<(String, u64)> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|l| (l["what"].as_str().unwrap().to_string(), l[size].as_u64().unwrap()))
            .collect()
    };
    let planned = layers(&plan["options"][2]["layers"], "uncompressed");
    let actual = layers(&built["layers"], "uncompressed_size");
    let names = |list: &[(String, u64)]| list.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&planned), names(&actual));
    for ((what, estimate), (_, size)) in planned.iter().zip(&actual) {
        let (estimate, size) = (*estimate as f64, *size as f64);
        assert!((estimate - size).abs() <= 8192.0 + size * 0.01, "{what}: planned {estimate}, built {size}");
    }
}
