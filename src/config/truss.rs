//! Truss `config.yaml` → [`Spec`]: requirements, system packages, base image,
//! docker_server, secrets (names only), `model_cache` with the rules of
//! Baseten's docs, and the newer `weights` (BDN) list.

use super::diagnostics::Diagnostics;
use super::extension::{self, one_of};
use super::reader::{Reader, Section, Syntax};
use super::tree::{Node, Value};
use super::weights::{self, WeightsDraft};
use crate::spec::*;
use std::collections::BTreeMap;
use std::path::Path;

/// Top-level Truss keys imgbake reads nothing from but accepts without a warning.
const KNOWN_UNUSED_KEYS: [&str; 22] = [
    "model_metadata",
    "description",
    "model_class_name",
    "model_module_dir",
    "model_class_filename",
    "data_dir",
    "bundled_packages_dir",
    "external_package_dirs",
    "spec_version",
    "runtime",
    "examples_filename",
    "live_reload",
    "apply_library_patches",
    "model_framework",
    "model_type",
    "build",
    "external_data",
    "trt_llm",
    "training_checkpoints",
    "input_type",
    "hf_cache",
    "use_local_src",
];

pub fn load(tree: &Node, project_dir: &Path, diags: Diagnostics) -> (Option<Spec>, Diagnostics) {
    let mut reader = Reader::new(diags, Syntax::Yaml);
    let root = reader.root(tree);
    for key in KNOWN_UNUSED_KEYS {
        reader.value(root, key);
    }
    let name = reader.string(root, "model_name").map(|(s, _)| s).unwrap_or_else(|| {
        project_dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "truss".to_string())
    });
    let python_version = python_version(&mut reader, root);
    let mut dependencies = Dependencies {
        pip: requirements(reader.strings(root, "requirements")),
        apt: extension::strings(reader.strings(root, "system_packages"))
            .into_iter()
            .map(|name| Requirement { name, constraint: String::new() })
            .collect(),
        ..Dependencies::default()
    };
    if let Some((file, span)) = reader.string(root, "requirements_file") {
        let resolved = project_dir.join(&file);
        if !dependencies.pip.is_empty() {
            reader.diags.error(span, "both `requirements` and `requirements_file` are given; use one");
        }
        if resolved.is_file() {
            dependencies.pip_file = Some(resolved);
        } else {
            reader.diags.error(span, format!("requirements_file `{file}` does not exist ({})", resolved.display()));
        }
    }
    let base_section = reader.section(root, "base_image");
    let base = BaseImage {
        image: reader
            .string(base_section, "image")
            .map(|(s, _)| s)
            .unwrap_or_else(|| format!("python:{python_version}-slim")),
        python_executable: reader.string(base_section, "python_executable_path").map(|(s, _)| s),
    };
    reader.value(base_section, "docker_auth");
    let build_commands = extension::strings(reader.strings(root, "build_commands"));
    let environment = environment(&mut reader, root);
    let secret_names = secret_names(&mut reader, root);
    let runtime = docker_server(&mut reader, root, environment, secret_names);
    let hardware = resources(&mut reader, root);

    let ext = extension::load(&mut reader, root, project_dir);
    let runtime = Runtime { check_entrypoint: ext.check_entrypoint.unwrap_or(true), ..runtime };
    let target = ext.target_settings(Target::Baseten);
    let weights_mode = ext.weights_mode.unwrap_or(WeightsMode::Auto);
    let mut drafts = model_cache(&mut reader, root, project_dir);
    drafts.extend(bdn_weights(&mut reader, root, project_dir));
    drafts.extend(ext.weights);
    let weights = weights::finish(drafts, &target, weights_mode, &mut reader.diags);

    let diags = reader.finish();
    if diags.has_errors() {
        return (None, diags);
    }
    let spec = Spec {
        schema_version: SPEC_SCHEMA_VERSION,
        source: SourceFile {
            path: diags.file.clone(),
            format: ConfigFormat::Truss,
            project_dir: project_dir.to_path_buf(),
        },
        name,
        base,
        python: Python {
            version: python_version,
            installer: PythonInstaller::Uv,
            bytecode: ext.bytecode.unwrap_or(true),
        },
        dependencies,
        app: AppFiles {
            root: project_dir.to_path_buf(),
            include: vec!["*".to_string()],
            exclude: vec![".*".to_string(), "__pycache__/".to_string()],
            workdir: "/app".to_string(),
        },
        runtime,
        build: BuildCommands { build_commands, ..BuildCommands::default() },
        hardware,
        scaling: None,
        cerebrium: None,
        target,
        compression: ext.compression.unwrap_or(Compression::Auto),
        weights_mode,
        weights_updates_per_week: ext.weights_updates_per_week,
        weights_split_size: ext.weights_split_size.unwrap_or(DEFAULT_WEIGHTS_SPLIT_SIZE),
        dependency_split_size: ext.dependency_split_size.unwrap_or(crate::spec::DEFAULT_DEPENDENCY_SPLIT_SIZE),
        artifact_repo: ext.artifact_repo.clone(),
        weights,
    };
    (Some(spec), diags)
}

/// `py311` → `3.11` (Truss's form); `3.11` is accepted too.
fn python_version<'a>(reader: &mut Reader<'a>, root: Section<'a>) -> String {
    let Some((text, span)) = reader.string(root, "python_version") else {
        return "3.11".to_string();
    };
    let digits = text.strip_prefix("py").unwrap_or(&text).replace('.', "");
    let minor = digits.strip_prefix('3').and_then(|m| m.parse::<u32>().ok());
    match minor {
        Some(minor @ 8..=13) => format!("3.{minor}"),
        _ => {
            reader.diags.error(span, format!("`python_version` must be one of py38 … py313, found \"{text}\"")).hint =
                Some("Truss writes the version as py311 for Python 3.11".to_string());
            "3.11".to_string()
        }
    }
}

/// Truss requirements are pip requirement strings as they are.
fn requirements(list: Option<Vec<(String, super::tree::Span)>>) -> Vec<Requirement> {
    extension::strings(list)
        .into_iter()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|line| {
            let line = line.trim().to_string();
            let split = line.find(|c: char| "=<>!~;[ @".contains(c)).unwrap_or(line.len());
            Requirement { name: line[..split].to_string(), constraint: line[split..].to_string() }
        })
        .collect()
}

fn environment<'a>(reader: &mut Reader<'a>, root: Section<'a>) -> BTreeMap<String, String> {
    let section = reader.section(root, "environment_variables");
    reader.open(section);
    let mut environment = BTreeMap::new();
    for (key, node) in reader.entries(section) {
        let value = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            _ => {
                reader.diags.error(
                    node.span,
                    format!("environment variable `{}` must be a single value, not a list or mapping", key.name),
                );
                continue;
            }
        };
        environment.insert(key.name.clone(), value);
    }
    environment
}

/// Secret names only: Truss's `secrets:` maps names to placeholders. A value
/// that looks real is never copied anywhere, and the user is warned.
fn secret_names<'a>(reader: &mut Reader<'a>, root: Section<'a>) -> Vec<String> {
    let section = reader.section(root, "secrets");
    reader.open(section);
    let mut names = Vec::new();
    for (key, node) in reader.entries(section) {
        let placeholder = match &node.value {
            Value::Null => true,
            Value::Str(s) => {
                s.is_empty() || s.starts_with("***") || s.contains("placeholder") || s.eq_ignore_ascii_case("null")
            }
            _ => false,
        };
        if !placeholder {
            reader.diags.warning(node.span, format!("secret `{}` has a value in config.yaml; imgbake keeps only its name, and the value should not be in this file", key.name)).hint =
                Some("store it in your platform's secret manager and write null or \"***\" here".to_string());
        }
        names.push(key.name.clone());
    }
    names
}

fn docker_server<'a>(
    reader: &mut Reader<'a>,
    root: Section<'a>,
    environment: BTreeMap<String, String>,
    secret_names: Vec<String>,
) -> Runtime {
    let section = reader.section(root, "docker_server");
    let mut runtime = Runtime { environment, secret_names, ..Runtime::default() };
    if let Some((command, span)) = reader.string(section, "start_command") {
        // Truss runs start_command through a shell.
        if command.trim().is_empty() {
            reader.diags.error(span, "`docker_server.start_command` is empty");
        }
        runtime.entrypoint = super::command::shell(&command);
    } else if section.node.is_some() {
        let span = reader.span(section);
        reader.diags.error(span, "`docker_server` has no `start_command`; it is required");
    }
    if let Some(port) = super::cerebrium::int_in_range(reader, section, "server_port", 1, 65535) {
        runtime.port = Some(port as u16);
    } else if section.node.is_some() && reader.value(section, "server_port").is_none() {
        let span = reader.span(section);
        reader.diags.error(span, "`docker_server` has no `server_port`; it is required");
    }
    let endpoint = |reader: &mut Reader<'a>, key: &'static str| {
        reader.string(section, key).map(|(s, _)| s).filter(|s| !s.is_empty())
    };
    runtime.healthcheck_endpoint = endpoint(reader, "liveness_endpoint");
    runtime.readycheck_endpoint = endpoint(reader, "readiness_endpoint");
    runtime.predict_endpoint = endpoint(reader, "predict_endpoint");
    runtime
}

/// `resources: {accelerator: "A10G:2", cpu: "4", memory: 16Gi}` → hardware.
fn resources<'a>(reader: &mut Reader<'a>, root: Section<'a>) -> Option<Hardware> {
    let section = reader.section(root, "resources");
    section.node?;
    reader.value(section, "use_gpu");
    reader.value(section, "node_count");
    reader.value(section, "instance_type");
    let text = |reader: &mut Reader<'a>, key: &'static str| match reader.value(section, key) {
        Some(Node { value: Value::Str(s), .. }) => Some(s.clone()),
        Some(Node { value: Value::Int(i), .. }) => Some(i.to_string()),
        Some(Node { value: Value::Float(f), .. }) => Some(f.to_string()),
        _ => None,
    };
    let cpu = text(reader, "cpu").and_then(|c| match c.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|m| m / 1000.0),
        None => c.parse().ok(),
    });
    let memory_gb = text(reader, "memory").and_then(|m| {
        let (number, scale) = if let Some(n) = m.strip_suffix("Gi") {
            (n, 1.073_741_824)
        } else if let Some(n) = m.strip_suffix("Mi") {
            (n, 0.001_048_576)
        } else if let Some(n) = m.strip_suffix('G') {
            (n, 1.0)
        } else {
            (m.as_str(), 1e-9)
        };
        number.parse::<f64>().ok().map(|n| n * scale)
    });
    let (compute, gpu_count) = match text(reader, "accelerator") {
        Some(accelerator) => {
            let (kind, count) = accelerator.split_once(':').unwrap_or((&accelerator, "1"));
            (vec![kind.to_string()], count.parse().unwrap_or(1))
        }
        None => (vec!["CPU".to_string()], 0),
    };
    Some(Hardware { cpu, memory_gb, compute, gpu_count, provider: None, region: None })
}

fn model_cache<'a>(reader: &mut Reader<'a>, root: Section<'a>, project_dir: &Path) -> Vec<WeightsDraft> {
    let Some(list) = reader.value(root, "model_cache") else {
        return Vec::new();
    };
    let Value::Seq(items) = &list.value else {
        if list.value != Value::Null {
            reader.type_error(root, "model_cache", list, "a list of repositories");
        }
        return Vec::new();
    };
    let mut drafts = Vec::new();
    let mut first_use_volume: Option<(bool, String)> = None;
    for (index, node) in items.iter().enumerate() {
        let Some(item) = reader.item(root, "model_cache", index, node) else {
            continue;
        };
        let origin = format!("model_cache[{index}]");
        let Some((repo_id, repo_span)) = reader.string(item, "repo_id") else {
            if reader.value(item, "repo_id").is_none() {
                reader.diags.error(node.span, format!("{origin} has no `repo_id`; it is required"));
            }
            continue;
        };
        let kind = one_of(reader, item, "kind", &["hf", "gcs", "s3", "azure"], |k| {
            Some(k.to_string()).filter(|k| ["hf", "gcs", "s3", "azure"].contains(&k.as_str()))
        })
        .unwrap_or_else(|| "hf".to_string());
        let revision = reader.string(item, "revision");
        let use_volume = reader.bool(item, "use_volume");
        let volume_folder = reader.string(item, "volume_folder");
        let secret = reader.string(item, "runtime_secret_name").map(|(s, _)| s);
        let allow_patterns = extension::strings(reader.string_or_strings(item, "allow_patterns"));
        let ignore_patterns = extension::strings(reader.string_or_strings(item, "ignore_patterns"));

        let volume = match use_volume {
            Some((flag, span)) => {
                match &first_use_volume {
                    Some((first, first_origin)) if *first != flag => {
                        reader.diags.error(span, format!("{origin} has use_volume: {flag} but {first_origin} has use_volume: {first}; all model_cache entries must agree")).hint =
                            Some("Truss mounts all model_cache entries the same way; set use_volume on every entry to the same value".to_string());
                    }
                    None => first_use_volume = Some((flag, origin.clone())),
                    _ => {}
                }
                flag
            }
            None => {
                reader.diags.warning(node.span, format!("{origin} has no `use_volume`; older Truss baked such weights into the image, and so does imgbake")).hint =
                    Some("add use_volume: true (with volume_folder) to keep the weights on a volume, or use_volume: false to bake them".to_string());
                false
            }
        };
        let source = if kind == "hf" {
            let revision = match &revision {
                Some((rev, _)) => rev.clone(),
                None => {
                    if volume {
                        reader.diags.error(repo_span, format!("{origin} ({repo_id}) has use_volume: true but no `revision`; Hugging Face weights on a volume must be pinned")).hint =
                            Some("add revision: <commit sha> (or a branch, which the build pins to its commit)".to_string());
                        continue;
                    } else {
                        reader.diags.warning(repo_span, format!("{origin} ({repo_id}) has no `revision`; using main"));
                    }
                    "main".to_string()
                }
            };
            let uri = format!("hf://{repo_id}@{revision}");
            weights::parse_source(&uri, project_dir).map(|s| (uri, s))
        } else {
            let scheme = match kind.as_str() {
                "s3" => "s3://",
                "gcs" => "gs://",
                _ => "az",
            };
            if !repo_id.starts_with(scheme) {
                let expected = if kind == "azure" { "az:// or azure://" } else { scheme };
                reader.diags.error(
                    repo_span,
                    format!("{origin} has kind: {kind} but repo_id `{repo_id}` does not start with {expected}"),
                );
                continue;
            }
            weights::parse_source(&repo_id, project_dir).map(|s| (repo_id.clone(), s))
        };
        let (uri, source) = match source {
            Ok(parsed) => parsed,
            Err(message) => {
                reader.diags.error(repo_span, message);
                continue;
            }
        };
        if volume && volume_folder.is_none() {
            reader.diags.error(node.span, format!("{origin} has use_volume: true but no `volume_folder`")).hint =
                Some("volume_folder names the folder under /app/model_cache where the weights appear".to_string());
            continue;
        }
        drafts.push(WeightsDraft {
            origin,
            uri,
            uri_span: repo_span,
            source,
            mount_span: volume_folder.as_ref().map(|(_, s)| *s).unwrap_or(node.span),
            mount: volume_folder.map(|(f, _)| f),
            volume_in_place: volume,
            allow_patterns,
            ignore_patterns,
            secret,
            mode: Some(if volume { WeightsMode::Volume } else { WeightsMode::Bake }),
            layout: WeightsLayout::Plain,
        });
    }
    drafts
}

/// Truss `weights:` (Baseten Delivery Network): source URI + absolute mount_location.
fn bdn_weights<'a>(reader: &mut Reader<'a>, root: Section<'a>, project_dir: &Path) -> Vec<WeightsDraft> {
    let Some(list) = reader.value(root, "weights") else {
        return Vec::new();
    };
    let Value::Seq(items) = &list.value else {
        if list.value != Value::Null {
            reader.type_error(root, "weights", list, "a list of weights sources");
        }
        return Vec::new();
    };
    let mut drafts = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for (index, node) in items.iter().enumerate() {
        let Some(item) = reader.item(root, "weights", index, node) else {
            continue;
        };
        let origin = format!("weights[{index}]");
        let source = reader.string(item, "source");
        let mount = reader.string(item, "mount_location");
        let secret = reader.string(item, "auth_secret_name").map(|(s, _)| s);
        let allow_patterns = extension::strings(reader.string_or_strings(item, "allow_patterns"));
        let ignore_patterns = extension::strings(reader.string_or_strings(item, "ignore_patterns"));
        let Some((uri, uri_span)) = source else {
            if reader.value(item, "source").is_none() {
                reader.diags.error(node.span, format!("{origin} has no `source`; it is required")).hint = Some(
                    "e.g. source: hf://org/name@<commit>, s3://bucket/path, gs://…, azure://…, https://…".to_string(),
                );
            }
            continue;
        };
        let Some((mount, mount_span)) = mount else {
            reader.diags.error(node.span, format!("{origin} has no `mount_location`; it is required"));
            continue;
        };
        if !mount.starts_with('/') {
            reader
                .diags
                .error(mount_span, format!("{origin}.mount_location must be an absolute path, found \"{mount}\""))
                .hint = Some(format!("e.g. /{}", mount.trim_start_matches("./")));
            continue;
        }
        let normalized = mount.trim_end_matches('/').to_string();
        if let Some((_, other)) = seen.iter().find(|(m, _)| *m == normalized) {
            reader.diags.error(
                mount_span,
                format!("{origin}.mount_location {mount} is also used by {other}; each must be unique"),
            );
            continue;
        }
        seen.push((normalized, origin.clone()));
        let source = match weights::parse_source(&uri, project_dir) {
            Ok(source) => source,
            Err(message) => {
                reader.diags.error(uri_span, message);
                continue;
            }
        };
        drafts.push(WeightsDraft {
            origin,
            uri,
            uri_span,
            source,
            mount: Some(mount),
            mount_span,
            volume_in_place: false,
            allow_patterns,
            ignore_patterns,
            secret,
            mode: None,
            layout: WeightsLayout::Plain,
        });
    }
    drafts
}

#[cfg(test)]
mod tests {
    use crate::config::load_text;
    use crate::spec::*;
    use std::path::Path;

    fn spec(text: &str) -> Spec {
        crate::config::spec_of("config.yaml", text)
    }

    #[test]
    fn secrets_keep_names_only_and_warn_on_values() {
        let text = "model_name: a\nsecrets:\n  hf_access_token: hf_realLookingValue123\n  other: null\n";
        let loaded = load_text(Path::new("config.yaml"), text);
        let spec = loaded.spec.unwrap();
        assert_eq!(spec.runtime.secret_names, ["hf_access_token", "other"]);
        let json = serde_json::to_string(&spec).unwrap();
        assert!(!json.contains("hf_realLookingValue123"), "a secret value reached the spec");
        assert!(loaded.diagnostics[0].message.contains("has a value in config.yaml"));
    }

    #[test]
    fn docker_server_becomes_the_entrypoint_and_port() {
        let spec = spec("model_name: a\ndocker_server:\n  start_command: python3 -m http.server 9000\n  server_port: 9000\n  liveness_endpoint: /health\n");
        assert_eq!(spec.runtime.entrypoint, ["/bin/sh", "-c", "python3 -m http.server 9000"]);
        assert_eq!(spec.runtime.port, Some(9000));
        assert_eq!(spec.runtime.healthcheck_endpoint.as_deref(), Some("/health"));
    }

    #[test]
    fn model_cache_volume_entries_live_at_the_app_path() {
        let spec = spec("model_name: a\nmodel_cache:\n  - repo_id: org/m\n    revision: abc\n    use_volume: true\n    volume_folder: m\n");
        let entry = &spec.weights[0];
        assert_eq!((entry.path.as_str(), entry.volume_path.as_str()), ("/app/model_cache/m", "/app/model_cache/m"));
        assert_eq!(entry.mode, WeightsMode::Volume);
        assert_eq!(entry.source, WeightsSource::Hf { repo: "org/m".into(), revision: "abc".into() });
    }

    #[test]
    fn resources_map_to_hardware() {
        let spec = spec("model_name: a\nresources:\n  accelerator: A10G:2\n  cpu: \"500m\"\n  memory: 2Gi\n");
        let hardware = spec.hardware.unwrap();
        assert_eq!((hardware.compute[0].as_str(), hardware.gpu_count), ("A10G", 2));
        assert_eq!(hardware.cpu, Some(0.5));
        assert!((hardware.memory_gb.unwrap() - 2.147).abs() < 0.01);
    }
}
