//! `cerebrium.toml` → [`Spec`], following Cerebrium's TOML reference
//! (sections deployment, runtime.custom, hardware, scaling, dependencies),
//! with its defaults, ranges and enums.

use super::command;
use super::diagnostics::Diagnostics;
use super::extension::{self, one_of};
use super::reader::{Reader, Section, Syntax};
use super::requirement;
use super::tree::{Node, Span, Value};
use super::weights;
use crate::spec::*;
use std::path::{Path, PathBuf};

pub const PYTHON_VERSIONS: [&str; 3] = ["3.10", "3.11", "3.12"];
pub const SCALING_METRICS: [&str; 4] =
    ["concurrency_utilization", "requests_per_second", "cpu_utilization", "memory_utilization"];
pub const LOAD_BALANCING: [&str; 5] = ["", "round-robin", "first-available", "min-connections", "random-choice-2"];
/// Compute types from Cerebrium's hardware docs; others get a warning (the list grows).
pub const KNOWN_COMPUTE: [&str; 13] = [
    "CPU",
    "TURING_T4",
    "ADA_L4",
    "ADA_L40",
    "AMPERE_A10",
    "AMPERE_A100",
    "AMPERE_A100_40GB",
    "AMPERE_A100_80GB",
    "HOPPER_H100",
    "HOPPER_H200",
    "BLACKWELL_B200",
    "BLACKWELL_B300",
    "TRN1",
];
const DEFAULT_BASE_IMAGE: &str = "debian:bookworm-slim";

pub fn load(tree: &Node, project_dir: &Path, diags: Diagnostics) -> (Option<Spec>, Diagnostics) {
    let mut reader = Reader::new(diags, Syntax::Toml);
    let root = reader.root(tree);
    let cerebrium = reader.section(root, "cerebrium");
    if cerebrium.node.is_none() {
        reader.diags.file_error("no [cerebrium] section: this does not look like a cerebrium.toml").hint =
            Some("a cerebrium.toml starts with [cerebrium.deployment] and name = \"my-app\"".to_string());
    }
    let deployment = reader.section(cerebrium, "deployment");
    let name = match reader.string(deployment, "name") {
        Some((name, span)) => {
            check_app_name(&mut reader, span, &name);
            name
        }
        None => {
            if reader.value(deployment, "name").is_none() {
                let span = reader.span(deployment);
                reader.diags.error(span, "[cerebrium.deployment] has no `name`; it is required").hint =
                    Some("add name = \"my-app\" under [cerebrium.deployment]".to_string());
            }
            String::new()
        }
    };
    let python_version = python_version(&mut reader, deployment);
    let use_uv = reader.bool(deployment, "use_uv").map(|(b, _)| b).unwrap_or(false);
    let disable_auth = reader.bool(deployment, "disable_auth").map(|(b, _)| b).unwrap_or(false);
    let include = extension::strings(reader.strings(deployment, "include"));
    let exclude = reader.strings(deployment, "exclude").map(|v| v.into_iter().map(|(s, _)| s).collect());
    let shell_commands = extension::strings(reader.strings(deployment, "shell_commands"));
    let pre_build_commands = extension::strings(reader.strings(deployment, "pre_build_commands"));
    let base_image = reader
        .string(deployment, "docker_base_image_url")
        .map(|(s, _)| s)
        .unwrap_or_else(|| DEFAULT_BASE_IMAGE.to_string());
    let init_timeout =
        int_in_range(&mut reader, deployment, "deployment_initialization_timeout", 60, 830).unwrap_or(600);

    let runtime_section = reader.section(cerebrium, "runtime");
    let container_runtime = reader.string(runtime_section, "container_runtime").map(|(s, _)| s);
    let custom = reader.section(runtime_section, "custom");
    let runtime = custom_runtime(&mut reader, custom);
    let dockerfile_path = reader.string(custom, "dockerfile_path").and_then(|(path, span)| {
        let resolved = project_dir.join(&path);
        if resolved.is_file() {
            Some(resolved)
        } else {
            reader.diags.error(span, format!("dockerfile_path `{path}` does not exist ({})", resolved.display()));
            None
        }
    });

    let hardware_section = reader.section(cerebrium, "hardware");
    let hardware = hardware_section.node.map(|_| hardware(&mut reader, hardware_section));
    let compute_tier = reader.string(hardware_section, "compute_tier").map(|(s, _)| s);
    let scaling_section = reader.section(cerebrium, "scaling");
    let scaling = scaling(&mut reader, scaling_section);

    let dependencies = dependencies(&mut reader, cerebrium, project_dir);
    let ext = extension::load(&mut reader, root, project_dir);
    let runtime = Runtime { check_entrypoint: ext.check_entrypoint.unwrap_or(true), ..runtime };

    if dockerfile_path.is_some() {
        let overridden: Vec<&str> =
            [("docker_base_image_url", deployment), ("shell_commands", deployment), ("pre_build_commands", deployment)]
                .iter()
                .filter(|(key, section)| section.node.and_then(|n| n.get(key)).is_some())
                .map(|(key, _)| *key)
                .chain(has_any_dependencies(&dependencies).then_some("dependencies"))
                .collect();
        if !overridden.is_empty() {
            let span = reader.span(custom);
            reader.diags.warning(
                span,
                format!(
                    "dockerfile_path is set, so the Dockerfile decides the image and these settings are ignored: {}",
                    overridden.join(", ")
                ),
            );
        }
    }

    let target = ext.target_settings(Target::Cerebrium);
    let weights_mode = ext.weights_mode.unwrap_or(WeightsMode::Auto);
    let weights = weights::finish(ext.weights, &target, weights_mode, &mut reader.diags);
    let diags = reader.finish();
    if diags.has_errors() {
        return (None, diags);
    }
    let spec = Spec {
        schema_version: SPEC_SCHEMA_VERSION,
        source: SourceFile {
            path: diags.file.clone(),
            format: ConfigFormat::Cerebrium,
            project_dir: project_dir.to_path_buf(),
        },
        name,
        base: BaseImage { image: base_image, python_executable: None },
        python: Python {
            version: python_version,
            installer: if use_uv { PythonInstaller::Uv } else { PythonInstaller::Pip },
            bytecode: ext.bytecode.unwrap_or(true),
        },
        dependencies,
        app: AppFiles {
            root: project_dir.to_path_buf(),
            include: if include.is_empty() { vec!["*".to_string()] } else { include },
            exclude: exclude.unwrap_or_else(|| vec![".*".to_string()]),
            workdir: "/app".to_string(),
        },
        runtime,
        build: BuildCommands { pre_build_commands, shell_commands, build_commands: Vec::new(), dockerfile_path },
        hardware,
        scaling: Some(scaling),
        cerebrium: Some(CerebriumSettings {
            disable_auth,
            deployment_initialization_timeout: init_timeout as u32,
            compute_tier,
            container_runtime,
        }),
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

fn check_app_name(reader: &mut Reader<'_>, span: Span, name: &str) {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.starts_with('-');
    if !valid {
        reader.diags.error(span, format!("app name \"{name}\" must be 1–63 letters, digits, '-' or '_'")).hint =
            Some("the name becomes part of the endpoint URL and the image name".to_string());
    }
}

fn python_version<'a>(reader: &mut Reader<'a>, deployment: Section<'a>) -> String {
    let node = reader.value(deployment, "python_version");
    if let Some(Node { value: Value::Float(f), span }) = node {
        reader
            .diags
            .error(*span, format!("`python_version` in [cerebrium.deployment] must be a string, found the number {f}"))
            .hint = Some(format!("quote it: python_version = \"{f}\" (as a number 3.10 would read as 3.1)"));
        return "3.12".to_string();
    }
    one_of(reader, deployment, "python_version", &PYTHON_VERSIONS, |v| {
        PYTHON_VERSIONS.contains(&v).then(|| v.to_string())
    })
    .unwrap_or_else(|| "3.12".to_string())
}

pub fn int_in_range<'a>(
    reader: &mut Reader<'a>,
    section: Section<'a>,
    key: &'static str,
    min: i64,
    max: i64,
) -> Option<i64> {
    let (value, span) = reader.int(section, key)?;
    if value < min || value > max {
        let what = reader.describe(section, key);
        reader.diags.error(span, format!("{what} must be between {min} and {max}, found {value}"));
        return None;
    }
    Some(value)
}

fn custom_runtime<'a>(reader: &mut Reader<'a>, custom: Section<'a>) -> Runtime {
    let mut runtime = Runtime::default();
    if custom.node.is_none() {
        // Cerebrium's default runtime serves main.py itself; the image keeps the base's command.
        return runtime;
    }
    runtime.port = match int_in_range(reader, custom, "port", 1, 65535) {
        Some(port) => Some(port as u16),
        None => {
            if reader.value(custom, "port").is_none() {
                let span = reader.span(custom);
                reader.diags.error(span, "[cerebrium.runtime.custom] has no `port`; it is required").hint =
                    Some("add the port your server listens on, e.g. port = 8000".to_string());
            }
            None
        }
    };
    match entrypoint(reader, custom) {
        Some(args) if args.is_empty() => {
            let span = reader.span(custom);
            reader.diags.error(span, "`entrypoint` in [cerebrium.runtime.custom] is empty");
        }
        Some(args) => {
            if let (Some(port), Some(found)) = (runtime.port, port_in_command(&args)) {
                if found.0 != port {
                    reader.diags.warning(
                        found.1,
                        format!("the entrypoint uses port {} but `port` is {port}; they must match", found.0),
                    );
                }
            }
            runtime.entrypoint = args.into_iter().map(|(s, _)| s).collect();
        }
        None => {
            if reader.value(custom, "entrypoint").is_none() && reader.value(custom, "dockerfile_path").is_none() {
                let span = reader.span(custom);
                reader.diags.error(span, "[cerebrium.runtime.custom] has no `entrypoint`; it is required").hint = Some(
                    "e.g. entrypoint = [\"uvicorn\", \"main:app\", \"--host\", \"0.0.0.0\", \"--port\", \"8000\"]"
                        .to_string(),
                );
            }
        }
    }
    runtime.healthcheck_endpoint = endpoint(reader, custom, "healthcheck_endpoint");
    runtime.readycheck_endpoint = endpoint(reader, custom, "readycheck_endpoint");
    runtime
}

/// `entrypoint` as a list, or as one string split the way a POSIX shell
/// would (real cerebrium.toml files write `entrypoint = "uvicorn main:app …"`);
/// a warning shows the list a string became.
fn entrypoint<'a>(reader: &mut Reader<'a>, custom: Section<'a>) -> Option<Vec<(String, Span)>> {
    let Some(Node { value: Value::Str(text), span }) = reader.value(custom, "entrypoint") else {
        return reader.strings(custom, "entrypoint");
    };
    let span = *span;
    let line = match command::parse(text) {
        Ok(line) => line,
        Err(command::CommandError::Empty) => return Some(Vec::new()),
        Err(err) => {
            reader.diags.error(span, format!("`entrypoint` in [cerebrium.runtime.custom]: {err}")).hint =
                Some("close the quote, or write the entrypoint as a list: [\"uvicorn\", \"main:app\"]".to_string());
            return None;
        }
    };
    let argv = line.argv();
    let shown = format!("[{}]", argv.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", "));
    let message = match &line {
        command::CommandLine::Argv(_) => format!("`entrypoint` is a string; imgbake runs it as {shown}"),
        command::CommandLine::Shell { reason, .. } => {
            format!("`entrypoint` needs a shell ({reason}); imgbake runs it as {shown}")
        }
    };
    reader.diags.warning(span, message).hint = Some(format!("write the list to silence this: entrypoint = {shown}"));
    Some(argv.into_iter().map(|arg| (arg, span)).collect())
}

/// The port an entrypoint names (`--port 8000`, `--port=8000`, `--bind 0.0.0.0:8000`).
fn port_in_command(args: &[(String, Span)]) -> Option<(u16, Span)> {
    for (i, (arg, span)) in args.iter().enumerate() {
        let value = if arg == "--port" || arg == "-p" || arg == "--bind" || arg == "-b" {
            args.get(i + 1).map(|(v, s)| (v.as_str(), *s))
        } else {
            arg.strip_prefix("--port=").or_else(|| arg.strip_prefix("--bind=")).map(|v| (v, *span))
        };
        if let Some((value, span)) = value {
            let digits = value.rsplit(':').next().unwrap_or(value);
            if let Ok(port) = digits.parse() {
                return Some((port, span));
            }
        }
    }
    None
}

fn endpoint<'a>(reader: &mut Reader<'a>, section: Section<'a>, key: &'static str) -> Option<String> {
    let (path, span) = reader.string(section, key)?;
    if path.is_empty() {
        return None;
    }
    if !path.starts_with('/') {
        let what = reader.describe(section, key);
        reader.diags.error(span, format!("{what} must be an HTTP path starting with '/', found \"{path}\""));
        return None;
    }
    Some(path)
}

fn hardware<'a>(reader: &mut Reader<'a>, section: Section<'a>) -> Hardware {
    let cpu = reader.float(section, "cpu");
    let memory = reader.float(section, "memory");
    for (key, value) in [("cpu", cpu), ("memory", memory)] {
        match value {
            Some((v, span)) if v <= 0.0 => {
                let what = reader.describe(section, key);
                reader.diags.error(span, format!("{what} must be more than 0, found {v}"));
            }
            None if reader.value(section, key).is_none() => {
                let span = reader.span(section);
                reader.diags.warning(
                    span,
                    format!("[cerebrium.hardware] has no `{key}`; Cerebrium requires it at deploy time"),
                );
            }
            _ => {}
        }
    }
    let compute: Vec<(String, Span)> = match reader.value(section, "compute") {
        Some(Node { value: Value::Str(s), span }) => vec![(s.clone(), *span)],
        Some(_) => reader.string_or_strings(section, "compute").unwrap_or_default(),
        None => Vec::new(),
    };
    for (name, span) in &compute {
        if !KNOWN_COMPUTE.contains(&name.as_str()) {
            let warning = reader.diags.warning(*span, format!("unknown compute type \"{name}\""));
            warning.hint = super::suggest::closest(name, KNOWN_COMPUTE)
                .map(|c| format!("did you mean \"{c}\"?"))
                .or_else(|| Some(format!("known types: {}", KNOWN_COMPUTE.join(", "))));
        }
    }
    let compute: Vec<String> =
        if compute.is_empty() { vec!["CPU".to_string()] } else { compute.into_iter().map(|(s, _)| s).collect() };
    let accelerated = compute.iter().any(|c| c != "CPU");
    let gpu_count = match int_in_range(reader, section, "gpu_count", 0, 64) {
        Some(n) => {
            if accelerated && n == 0 {
                let span = section.node.and_then(|n| n.get("gpu_count")).map(|n| n.span).unwrap_or_default();
                reader.diags.warning(span, format!("gpu_count is 0 but compute is {}", compute.join(", ")));
            }
            n as u32
        }
        None if accelerated => 1,
        None => 0,
    };
    Hardware {
        cpu: cpu.map(|(v, _)| v),
        memory_gb: memory.map(|(v, _)| v),
        compute,
        gpu_count,
        provider: Some(reader.string(section, "provider").map(|(s, _)| s).unwrap_or_else(|| "aws".to_string())),
        region: Some(reader.string(section, "region").map(|(s, _)| s).unwrap_or_else(|| "us-east-1".to_string())),
    }
}

/// A key that Cerebrium accepts under two names; both at once is an error.
fn aliased<'a>(reader: &mut Reader<'a>, section: Section<'a>, key: &'static str, alias: &'static str) -> &'static str {
    let has_key = section.node.and_then(|n| n.get(key)).is_some();
    let alias_node = section.node.and_then(|n| n.get(alias));
    reader.value(section, alias);
    reader.value(section, key);
    match (has_key, alias_node) {
        (true, Some(node)) => {
            reader.diags.error(node.span, format!("`{key}` and `{alias}` are the same setting; give only one"));
            key
        }
        (false, Some(_)) => alias,
        _ => key,
    }
}

fn scaling<'a>(reader: &mut Reader<'a>, section: Section<'a>) -> Scaling {
    let count = |reader: &mut Reader<'a>, key: &'static str, default: i64| {
        int_in_range(reader, section, key, 0, 100_000).unwrap_or(default) as u32
    };
    let min_replicas = count(reader, "min_replicas", 0);
    let max_replicas = count(reader, "max_replicas", 2);
    if min_replicas > max_replicas {
        let span = section.node.and_then(|n| n.get("min_replicas")).map(|n| n.span).unwrap_or_default();
        reader.diags.error(span, format!("min_replicas ({min_replicas}) is more than max_replicas ({max_replicas})"));
    }
    let replica_concurrency = int_in_range(reader, section, "replica_concurrency", 1, 100_000).unwrap_or(10) as u32;
    let response_grace_period = count(reader, "response_grace_period", 3600);
    let cooldown = count(reader, "cooldown", 1800);
    let scaling_metric = one_of(reader, section, "scaling_metric", &SCALING_METRICS, |m| {
        SCALING_METRICS.contains(&m).then(|| m.to_string())
    })
    .unwrap_or_else(|| "concurrency_utilization".to_string());
    let scaling_target = match reader.int(section, "scaling_target") {
        Some((value, span)) => {
            let percentage = scaling_metric != "requests_per_second";
            let (min, max) = if percentage { (1, 100) } else { (1, 1_000_000) };
            if value < min || value > max {
                let unit = if percentage { " (a percentage)" } else { "" };
                reader.diags.error(
                    span,
                    format!("scaling_target{unit} must be between {min} and {max} for {scaling_metric}, found {value}"),
                );
            }
            value.clamp(0, u32::MAX as i64) as u32
        }
        None => 100,
    };
    let scaling_buffer = match reader.int(section, "scaling_buffer") {
        Some((value, span)) => {
            if !matches!(scaling_metric.as_str(), "concurrency_utilization" | "requests_per_second") {
                reader.diags.error(span, format!("scaling_buffer only works with concurrency_utilization or requests_per_second, not {scaling_metric}"));
            }
            if value < 0 {
                reader.diags.error(span, format!("scaling_buffer must be 0 or more, found {value}"));
            }
            Some(value.max(0) as u32)
        }
        None => None,
    };
    let interval_key = aliased(reader, section, "evaluation_interval", "evaluation_interval_seconds");
    let evaluation_interval = int_in_range(reader, section, interval_key, 6, 300).unwrap_or(30) as u32;
    let balancing_key = aliased(reader, section, "load_balancing", "load_balancing_algorithm");
    let load_balancing =
        one_of(reader, section, balancing_key, &LOAD_BALANCING, |m| LOAD_BALANCING.contains(&m).then(|| m.to_string()))
            .unwrap_or_default();
    let roll_out_duration_seconds =
        int_in_range(reader, section, "roll_out_duration_seconds", 0, 600).unwrap_or(0) as u32;
    Scaling {
        min_replicas,
        max_replicas,
        replica_concurrency,
        response_grace_period,
        cooldown,
        scaling_metric,
        scaling_target,
        scaling_buffer,
        evaluation_interval,
        load_balancing,
        roll_out_duration_seconds,
    }
}

fn has_any_dependencies(deps: &Dependencies) -> bool {
    !deps.pip.is_empty()
        || !deps.apt.is_empty()
        || !deps.conda.is_empty()
        || deps.pip_file.is_some()
        || deps.apt_file.is_some()
        || deps.conda_file.is_some()
}

fn dependencies<'a>(reader: &mut Reader<'a>, cerebrium: Section<'a>, project_dir: &Path) -> Dependencies {
    let section = reader.section(cerebrium, "dependencies");
    let paths = reader.section(section, "paths");
    let mut deps = Dependencies::default();
    for manager in ["pip", "apt", "conda"] {
        let table = reader.section(section, manager);
        reader.open(table);
        let mut inline = Vec::new();
        for (key, node) in reader.entries(table) {
            match &node.value {
                Value::Str(version) => inline.push(requirement::from_cerebrium(&key.name, version)),
                _ => {
                    let found = node.type_name("table");
                    reader
                        .diags
                        .error(
                            node.span,
                            format!(
                                "version of `{}` in [cerebrium.dependencies.{manager}] must be a string, found {found}",
                                key.name
                            ),
                        )
                        .hint = Some(format!("write {} = \"latest\" or {} = \">=1.0\"", key.name, key.name));
                }
            }
        }
        let file = reader.string(paths, manager).and_then(|(path, span)| {
            let resolved: PathBuf = project_dir.join(&path);
            if !inline.is_empty() {
                reader
                    .diags
                    .error(
                        span,
                        format!("both [cerebrium.dependencies.{manager}] and paths.{manager} are given; use one"),
                    )
                    .hint = Some(format!("move the packages into {path}, or remove paths.{manager}"));
            }
            if resolved.is_file() {
                Some(resolved)
            } else {
                reader.diags.error(
                    span,
                    format!("paths.{manager} names `{path}`, which does not exist ({})", resolved.display()),
                );
                None
            }
        });
        match manager {
            "pip" => (deps.pip, deps.pip_file) = (inline, file),
            "apt" => (deps.apt, deps.apt_file) = (inline, file),
            _ => (deps.conda, deps.conda_file) = (inline, file),
        }
    }
    deps
}

#[cfg(test)]
mod tests {
    use crate::config::load_text;
    use crate::spec::*;
    use std::path::Path;

    fn spec(text: &str) -> Spec {
        crate::config::spec_of("cerebrium.toml", text)
    }

    #[test]
    fn documented_defaults_apply() {
        let spec = spec("[cerebrium.deployment]\nname = \"a\"\n");
        assert_eq!(spec.python.version, "3.12");
        assert_eq!(spec.python.installer, PythonInstaller::Pip);
        assert_eq!(spec.base.image, "debian:bookworm-slim");
        assert_eq!(spec.app.include, ["*"]);
        assert_eq!(spec.app.exclude, [".*"]);
        let cerebrium = spec.cerebrium.unwrap();
        assert_eq!(cerebrium.deployment_initialization_timeout, 600);
        assert!(!cerebrium.disable_auth);
        let scaling = spec.scaling.unwrap();
        assert_eq!(
            (scaling.min_replicas, scaling.max_replicas, scaling.replica_concurrency, scaling.cooldown),
            (0, 2, 10, 1800)
        );
        assert_eq!(
            (scaling.response_grace_period, scaling.scaling_target, scaling.evaluation_interval),
            (3600, 100, 30)
        );
        assert_eq!(scaling.scaling_metric, "concurrency_utilization");
        assert_eq!(spec.target.name, Target::Cerebrium);
        assert!(spec.runtime.entrypoint.is_empty());
    }

    #[test]
    fn gpu_count_defaults_to_one_for_a_gpu_and_zero_for_cpu() {
        let gpu = spec(
            "[cerebrium.deployment]\nname = \"a\"\n[cerebrium.hardware]\ncpu = 2\nmemory = 8.0\ncompute = \"ADA_L4\"\n",
        );
        assert_eq!(gpu.hardware.unwrap().gpu_count, 1);
        let cpu = spec("[cerebrium.deployment]\nname = \"a\"\n[cerebrium.hardware]\ncpu = 2\nmemory = 8.0\n");
        let hardware = cpu.hardware.unwrap();
        assert_eq!((hardware.gpu_count, hardware.compute.as_slice()), (0, ["CPU".to_string()].as_slice()));
        let explicit = spec("[cerebrium.deployment]\nname = \"a\"\n[cerebrium.hardware]\ncompute = [\"ADA_L4\", \"AMPERE_A10\"]\ngpu_count = 2\n");
        let hardware = explicit.hardware.unwrap();
        assert_eq!(hardware.gpu_count, 2);
        assert_eq!(hardware.compute, ["ADA_L4", "AMPERE_A10"]);
    }

    #[test]
    fn newer_key_names_are_aliases() {
        let spec = spec(
            "[cerebrium.deployment]\nname = \"a\"\n[cerebrium.scaling]\nevaluation_interval_seconds = 12\nload_balancing_algorithm = \"round-robin\"\n",
        );
        let scaling = spec.scaling.unwrap();
        assert_eq!((scaling.evaluation_interval, scaling.load_balancing.as_str()), (12, "round-robin"));
    }

    #[test]
    fn range_edges_are_inclusive() {
        for (key, value, ok) in [
            ("deployment_initialization_timeout", 60, true),
            ("deployment_initialization_timeout", 830, true),
            ("deployment_initialization_timeout", 831, false),
            ("deployment_initialization_timeout", 59, false),
        ] {
            let text = format!("[cerebrium.deployment]\nname = \"a\"\n{key} = {value}\n");
            assert_eq!(load_text(Path::new("c.toml"), &text).spec.is_some(), ok, "{key} = {value}");
        }
        for (value, ok) in [(6, true), (300, true), (5, false), (301, false)] {
            let text =
                format!("[cerebrium.deployment]\nname = \"a\"\n[cerebrium.scaling]\nevaluation_interval = {value}\n");
            assert_eq!(load_text(Path::new("c.toml"), &text).spec.is_some(), ok, "evaluation_interval = {value}");
        }
        for (value, ok) in [(600, true), (601, false)] {
            let text = format!(
                "[cerebrium.deployment]\nname = \"a\"\n[cerebrium.scaling]\nroll_out_duration_seconds = {value}\n"
            );
            assert_eq!(load_text(Path::new("c.toml"), &text).spec.is_some(), ok, "roll_out_duration_seconds = {value}");
        }
    }

    #[test]
    fn scaling_buffer_is_allowed_with_request_metrics() {
        for metric in ["concurrency_utilization", "requests_per_second"] {
            let text = format!(
                "[cerebrium.deployment]\nname = \"a\"\n[cerebrium.scaling]\nscaling_metric = \"{metric}\"\nscaling_buffer = 3\n"
            );
            assert_eq!(spec(&text).scaling.unwrap().scaling_buffer, Some(3));
        }
    }

    #[test]
    fn entrypoint_string_is_split_with_a_warning_showing_the_list() {
        let text = "[cerebrium.deployment]\nname = \"a\"\n[cerebrium.runtime.custom]\nport = 5000\nentrypoint = \"uvicorn main:app --host 0.0.0.0 --port 5000\"\n";
        let loaded = load_text(Path::new("cerebrium.toml"), text);
        let spec = loaded.spec.expect("a string entrypoint is valid");
        assert_eq!(spec.runtime.entrypoint, ["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "5000"]);
        let shown: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            shown,
            ["warning: cerebrium.toml:5:14: `entrypoint` is a string; imgbake runs it as [\"uvicorn\", \"main:app\", \"--host\", \"0.0.0.0\", \"--port\", \"5000\"]\n  hint: write the list to silence this: entrypoint = [\"uvicorn\", \"main:app\", \"--host\", \"0.0.0.0\", \"--port\", \"5000\"]"]
        );
    }

    #[test]
    fn entrypoint_string_that_needs_a_shell_runs_under_sh() {
        let text = "[cerebrium.deployment]\nname = \"a\"\n[cerebrium.runtime.custom]\nport = 8000\nentrypoint = \"cd /app && uvicorn main:app --port $PORT\"\n";
        let loaded = load_text(Path::new("cerebrium.toml"), text);
        assert_eq!(
            loaded.spec.unwrap().runtime.entrypoint,
            ["/bin/sh", "-c", "cd /app && uvicorn main:app --port $PORT"]
        );
        assert!(loaded.diagnostics[0].message.contains("needs a shell (`&&`)"), "{:?}", loaded.diagnostics);
        let unclosed = "[cerebrium.deployment]\nname = \"a\"\n[cerebrium.runtime.custom]\nport = 8000\nentrypoint = \"python -c 'print(1)\"\n";
        let loaded = load_text(Path::new("cerebrium.toml"), unclosed);
        assert!(loaded.spec.is_none());
        assert!(
            loaded.diagnostics[0]
                .to_string()
                .contains("5:14: `entrypoint` in [cerebrium.runtime.custom]: the command has an unclosed single quote"),
            "{:?}",
            loaded.diagnostics
        );
    }

    #[test]
    fn entrypoint_port_mismatch_warns() {
        let text = "[cerebrium.deployment]\nname = \"a\"\n[cerebrium.runtime.custom]\nport = 8000\nentrypoint = [\"uvicorn\", \"m:app\", \"--port\", \"9000\"]\n";
        let loaded = load_text(Path::new("c.toml"), text);
        assert!(loaded.spec.is_some());
        assert!(
            loaded.diagnostics[0].message.contains("uses port 9000 but `port` is 8000"),
            "{:?}",
            loaded.diagnostics
        );
    }
}
