//! `build --builder buildah|docker|buildkit`: hands a generated context to a
//! container builder and brings the image back as an OCI layout (and,
//! optionally, pushes it). imgbake runs the builder as a child process and
//! shows its output; it never talks to a daemon itself.
//!
//! buildah runs with `--isolation chroot --storage-driver vfs` in a private
//! storage directory under a temp dir, so it needs no daemon, no overlay
//! support and leaves nothing behind (the cost: the base is pulled per build).

use crate::image::layout::OciRef;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerBuilder {
    Buildah,
    Docker,
    Buildkit,
}

impl ContainerBuilder {
    pub fn program(self) -> &'static str {
        match self {
            ContainerBuilder::Buildah => "buildah",
            ContainerBuilder::Docker => "docker",
            ContainerBuilder::Buildkit => "buildctl",
        }
    }
}

/// One builder run: where the context is and where the image goes.
#[derive(Debug, Clone)]
pub struct BuilderRun {
    pub builder: ContainerBuilder,
    pub context: PathBuf,
    pub output: OciRef,
    /// `host[:port]/repo[:tag]` to push to as well.
    pub push: Option<String>,
    /// Registries reached over plain HTTP (`--tls-verify=false`).
    pub insecure_registries: Vec<String>,
    /// The builder's own name for the image (`localhost/imgbake/<app>:<tag>`).
    pub image_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BuilderError {
    #[error("`{program}` is not installed; install it or use the native build (no --builder)")]
    Missing { program: &'static str, package: &'static str },
    #[error("`{command}` failed ({status})")]
    Failed { command: String, status: String },
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare the builder's storage")]
    Storage(#[source] std::io::Error),
}

impl crate::plumbing::errors::Hint for BuilderError {
    fn hint(&self) -> Option<String> {
        match self {
            BuilderError::Missing { package, .. } => Some(format!("on Debian, `apt-get install {package}`")),
            _ => None,
        }
    }
}

/// What the builder made.
#[derive(Debug, Clone)]
pub struct BuilderOutcome {
    /// The manifest digest in the OCI layout, when the builder reports it.
    pub manifest_digest: Option<String>,
    pub pushed: Option<String>,
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// Runs a builder step with its output going to ours (the user sees the build).
fn run_step(command: &mut Command) -> Result<(), BuilderError> {
    let text = format!("{command:?}").replace('"', "");
    eprintln!("+ {text}");
    let status = command.status().map_err(|source| BuilderError::Spawn { command: text.clone(), source })?;
    if status.success() {
        Ok(())
    } else {
        Err(BuilderError::Failed { command: text, status: status.to_string() })
    }
}

/// Whether any registry this build talks to must be reached over plain HTTP.
fn any_insecure(run: &BuilderRun, dockerfile: &str) -> bool {
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FROM "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    run.insecure_registries.iter().any(|host| {
        let prefix = format!("{host}/");
        froms.iter().any(|f| f.starts_with(&prefix)) || run.push.as_deref().is_some_and(|p| p.starts_with(&prefix))
    })
}

pub fn build(run: &BuilderRun) -> Result<BuilderOutcome, BuilderError> {
    let program = run.builder.program();
    if !on_path(program) {
        let package = match run.builder {
            ContainerBuilder::Buildah => "buildah",
            ContainerBuilder::Docker => "docker.io",
            ContainerBuilder::Buildkit => "buildkit (buildctl and a running buildkitd)",
        };
        return Err(BuilderError::Missing { program, package });
    }
    let dockerfile = std::fs::read_to_string(run.context.join("Dockerfile")).unwrap_or_default();
    let tls_verify = format!("--tls-verify={}", !any_insecure(run, &dockerfile));
    std::fs::create_dir_all(&run.output.dir).map_err(BuilderError::Storage)?;
    let oci_dest = format!("oci:{}:{}", run.output.dir.display(), run.output.tag);
    match run.builder {
        ContainerBuilder::Buildah => {
            let storage =
                tempfile::Builder::new().prefix("imgbake-buildah-").tempdir().map_err(BuilderError::Storage)?;
            let buildah = || {
                let mut command = Command::new("buildah");
                command
                    .arg("--root")
                    .arg(storage.path().join("root"))
                    .arg("--runroot")
                    .arg(storage.path().join("run"))
                    .arg("--storage-driver")
                    .arg("vfs");
                command
            };
            // `--layers`: a layer per instruction, so each weights COPY stays its
            // own layer (without it buildah squashes the stage into one).
            run_step(
                buildah()
                    .args(["bud", "--isolation", "chroot", "--layers", &tls_verify, "-f"])
                    .arg(run.context.join("Dockerfile"))
                    .args(["-t", &run.image_name])
                    .arg(&run.context),
            )?;
            let digest_file = storage.path().join("digest");
            run_step(buildah().args(["push", "--digestfile"]).arg(&digest_file).args([&run.image_name, &oci_dest]))?;
            let manifest_digest = std::fs::read_to_string(&digest_file).ok().map(|d| d.trim().to_string());
            let pushed = match &run.push {
                Some(reference) => {
                    let pushed_digest = storage.path().join("pushed-digest");
                    run_step(
                        buildah()
                            .args(["push", &tls_verify, "--digestfile"])
                            .arg(&pushed_digest)
                            .args([&run.image_name, &format!("docker://{reference}")]),
                    )?;
                    let digest = std::fs::read_to_string(&pushed_digest).unwrap_or_default();
                    Some(format!("{reference}@{}", digest.trim()))
                }
                None => None,
            };
            // The private storage holds vfs copies of every layer; it goes with `storage`.
            remove_storage(storage.path());
            Ok(BuilderOutcome { manifest_digest, pushed })
        }
        ContainerBuilder::Docker => {
            run_step(
                Command::new("docker")
                    // RUN --mount needs BuildKit, the default since Docker 23; older daemons take this switch.
                    .env("DOCKER_BUILDKIT", "1")
                    .args(["build", "-f"])
                    .arg(run.context.join("Dockerfile"))
                    .args(["-t", &run.image_name])
                    .arg(&run.context),
            )?;
            if !on_path("skopeo") {
                return Err(BuilderError::Missing { program: "skopeo", package: "skopeo" });
            }
            run_step(Command::new("skopeo").args(["copy", &format!("docker-daemon:{}", run.image_name), &oci_dest]))?;
            let pushed = match &run.push {
                Some(reference) => {
                    run_step(Command::new("docker").args(["tag", &run.image_name, reference]))?;
                    run_step(Command::new("docker").args(["push", reference]))?;
                    Some(reference.clone())
                }
                None => None,
            };
            Ok(BuilderOutcome { manifest_digest: None, pushed })
        }
        ContainerBuilder::Buildkit => {
            let context = run.context.display().to_string();
            let mut outputs =
                vec![format!("type=oci,tar=false,dest={},name={}", run.output.dir.display(), run.output.tag)];
            if let Some(reference) = &run.push {
                let insecure = if tls_verify.ends_with("false") { ",registry.insecure=true" } else { "" };
                outputs.push(format!("type=image,name={reference},push=true{insecure}"));
            }
            let mut command = Command::new("buildctl");
            command.args([
                "build",
                "--frontend",
                "dockerfile.v0",
                "--local",
                &format!("context={context}"),
                "--local",
                &format!("dockerfile={context}"),
            ]);
            for output in &outputs {
                command.args(["--output", output]);
            }
            run_step(&mut command)?;
            Ok(BuilderOutcome { manifest_digest: None, pushed: run.push.clone() })
        }
    }
}

/// vfs layers are plain directories, some made read-only by the image;
/// make them writable so the temp dir can be removed.
fn remove_storage(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walkdir::WalkDir::new(path).into_iter().filter_map(Result::ok) {
        if entry.file_type().is_dir() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
    let _ = std::fs::remove_dir_all(path);
}
