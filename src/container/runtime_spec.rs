//! The runtime spec (`config.json` of a runc bundle) for an image, written
//! with `oci-spec`'s runtime types from the image config as Docker reads
//! it: `Entrypoint` + `Cmd` are the process, `Env` its environment,
//! `WorkingDir` its directory, `User` (`uid[:gid]` or names looked up in the
//! image's `/etc/passwd` and `/etc/group`) its identity.
//!
//! What differs from `oci-spec`'s (runc's) default spec, and why:
//! - no network namespace: the container shares the host's network, as the
//!   lab does, so the health endpoint answers on `127.0.0.1:<port>` and the
//!   prefetch hook reaches its sources; the host's `/etc/resolv.conf` and
//!   `/etc/hosts` are bind-mounted read-only to match;
//! - no cgroup namespace and no `linux.resources`: no limit that the host
//!   does not have, so a measurement is not a limit's;
//! - a writable root (apps write `/tmp`, `__pycache__`), no terminal;
//! - `RLIMIT_NOFILE` as imgbake's own hard limit rather than 1024 (model
//!   servers open many files; runc may not raise it past the caller's).

use oci_spec::runtime::{
    LinuxNamespaceType, MountBuilder, PosixRlimitBuilder, PosixRlimitType, RootBuilder, Spec, UserBuilder,
};
use std::path::{Path, PathBuf};

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Host files bind-mounted read-only, since the network is the host's.
const HOST_FILES: &[&str] = &["/etc/resolv.conf", "/etc/hosts"];

/// The process an image config describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageProcess {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// `User` as written (`""` is root).
    pub user: String,
}

/// A host directory (or file) mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// What `imgbake run` adds to the image's process.
#[derive(Debug, Clone, Default)]
pub struct RunSettings {
    /// Variables set (replacing the image's of the same name).
    pub env: Vec<(String, String)>,
    pub mounts: Vec<BindMount>,
    pub hostname: String,
    /// `RLIMIT_NOFILE` of the process (soft and hard).
    pub open_files: u64,
}

/// This process's hard `RLIMIT_NOFILE`: what the container may have.
pub fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if ok {
        limit.rlim_max
    } else {
        1024
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("the image config sets neither Entrypoint nor Cmd: there is nothing to run")]
    NoCommand,
    #[error("the image's user `{user}` is not in its {file}")]
    UnknownUser { user: String, file: &'static str },
    #[error("cannot write the runtime spec")]
    Build(#[source] oci_spec::OciSpecError),
}

/// The process of an image config (Docker's rules: Entrypoint, then Cmd as its arguments).
pub fn image_process(config: &crate::image::oci::ImageConfiguration) -> Result<ImageProcess, SpecError> {
    let runtime = config.config.clone().unwrap_or_default();
    let list = |field: Option<Option<Vec<String>>>| field.flatten().unwrap_or_default();
    let mut args = list(runtime.entrypoint);
    args.extend(list(runtime.cmd));
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let mut env = list(runtime.env);
    if !env.iter().any(|v| v.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let cwd = runtime.working_dir.flatten().filter(|d| !d.is_empty()).unwrap_or_else(|| "/".to_string());
    let user = runtime.extra.get("User").and_then(|u| u.as_str()).unwrap_or_default().to_string();
    Ok(ImageProcess { args, env, cwd, user })
}

/// `image`'s environment with `settings` applied: a variable set twice keeps the later value.
pub fn merged_env(image: &[String], set: &[(String, String)]) -> Vec<String> {
    let mut env: Vec<String> = image.to_vec();
    for (name, value) in set {
        let prefix = format!("{name}=");
        env.retain(|entry| !entry.starts_with(&prefix));
        env.push(format!("{name}={value}"));
    }
    env
}

/// `uid`, `gid` and extra gids of `User`: numbers as they are, names from
/// the image's `/etc/passwd` and `/etc/group` (read inside `rootfs`).
pub fn resolve_user(user: &str, rootfs: &Path) -> Result<(u32, u32), SpecError> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (name, group) = match user.split_once(':') {
        Some((name, group)) => (name, Some(group)),
        None => (user, None),
    };
    let read = |file: &str| {
        crate::container::unpack::resolve_in(rootfs, "etc", false)
            .and_then(|etc| std::fs::read_to_string(etc.join(file)))
            .unwrap_or_default()
    };
    // name:x:uid:gid:… in both files (group: name:x:gid:members).
    let lookup = |text: &str, wanted: &str, column: usize| {
        text.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&wanted)).then(|| fields.get(column)?.parse::<u32>().ok()).flatten()
        })
    };
    let passwd = read("passwd");
    let (uid, primary_gid) = match name.parse::<u32>() {
        Ok(uid) => {
            let gid = passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.get(2).and_then(|f| f.parse::<u32>().ok()) == Some(uid))
                    .then(|| fields.get(3)?.parse().ok())
                    .flatten()
            });
            (uid, gid.unwrap_or(0))
        }
        Err(_) => {
            let uid = lookup(&passwd, name, 2)
                .ok_or_else(|| SpecError::UnknownUser { user: user.to_string(), file: "/etc/passwd" })?;
            (uid, lookup(&passwd, name, 3).unwrap_or(0))
        }
    };
    let gid = match group {
        None => primary_gid,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(&read("group"), group, 2)
                .ok_or_else(|| SpecError::UnknownUser { user: user.to_string(), file: "/etc/group" })?,
        },
    };
    Ok((uid, gid))
}

/// The bundle's `config.json` for `process`, run as `uid:gid`, with `settings`.
pub fn runtime_spec(process: &ImageProcess, (uid, gid): (u32, u32), settings: &RunSettings) -> Result<Spec, SpecError> {
    let mut spec = Spec::default();
    spec.set_hostname(Some(settings.hostname.clone()));
    spec.set_root(Some(RootBuilder::default().path("rootfs").readonly(false).build().map_err(SpecError::Build)?));
    let mut oci_process = spec.process().clone().unwrap_or_default();
    oci_process.set_terminal(Some(false));
    oci_process.set_args(Some(process.args.clone()));
    oci_process.set_env(Some(merged_env(&process.env, &settings.env)));
    oci_process.set_cwd(PathBuf::from(&process.cwd));
    oci_process.set_user(UserBuilder::default().uid(uid).gid(gid).build().map_err(SpecError::Build)?);
    let open_files = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(settings.open_files)
        .hard(settings.open_files)
        .build()
        .map_err(SpecError::Build)?;
    oci_process.set_rlimits(Some(vec![open_files]));
    spec.set_process(Some(oci_process));

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let host_files = HOST_FILES.iter().filter(|f| Path::new(f).is_file()).map(|f| BindMount {
        source: PathBuf::from(f),
        destination: f.to_string(),
        read_only: true,
    });
    for mount in settings.mounts.iter().cloned().chain(host_files) {
        let mode = if mount.read_only { "ro" } else { "rw" };
        mounts.push(
            MountBuilder::default()
                .destination(mount.destination)
                .typ("bind")
                .source(mount.source)
                .options(vec!["rbind".to_string(), mode.to_string()])
                .build()
                .map_err(SpecError::Build)?,
        );
    }
    spec.set_mounts(Some(mounts));

    if let Some(linux) = spec.linux_mut() {
        linux.set_resources(None);
        if let Some(namespaces) = linux.namespaces_mut() {
            namespaces.retain(|n| !matches!(n.typ(), LinuxNamespaceType::Network | LinuxNamespaceType::Cgroup));
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::oci::ImageConfiguration;

    fn config(json: serde_json::Value) -> ImageConfiguration {
        serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": json,
        }))
        .unwrap()
    }

    #[test]
    fn entrypoint_then_cmd_env_and_working_dir_come_from_the_image() {
        let process = image_process(&config(serde_json::json!({
            "Entrypoint": ["/usr/local/bin/imgbake", "prefetch", "--"],
            "Cmd": ["python3", "server.py"],
            "Env": ["PATH=/opt/bin:/usr/bin", "A=1"],
            "WorkingDir": "/app",
            "User": "1000:1000",
        })))
        .unwrap();
        assert_eq!(process.args, ["/usr/local/bin/imgbake", "prefetch", "--", "python3", "server.py"]);
        assert_eq!(process.env, ["PATH=/opt/bin:/usr/bin", "A=1"]);
        assert_eq!(process.cwd, "/app");
        assert_eq!(process.user, "1000:1000");
    }

    #[test]
    fn an_image_with_nothing_to_run_is_refused_and_path_has_a_default() {
        assert!(matches!(image_process(&config(serde_json::json!({"Env": null}))), Err(SpecError::NoCommand)));
        let process = image_process(&config(serde_json::json!({"Cmd": ["sh"], "Env": null}))).unwrap();
        assert_eq!(process.env, [DEFAULT_PATH]);
        assert_eq!(process.cwd, "/");
    }

    #[test]
    fn users_are_numbers_or_names_of_the_image() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1001:1002::/app:/bin/sh\n")
            .unwrap();
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user("", root.path()).unwrap(), (0, 0));
        assert_eq!(resolve_user("app", root.path()).unwrap(), (1001, 1002));
        assert_eq!(resolve_user("1001", root.path()).unwrap(), (1001, 1002));
        assert_eq!(resolve_user("app:staff", root.path()).unwrap(), (1001, 50));
        assert_eq!(resolve_user("7:8", root.path()).unwrap(), (7, 8));
        let error = resolve_user("nobody", root.path()).unwrap_err();
        assert_eq!(error.to_string(), "the image's user `nobody` is not in its /etc/passwd");
    }

    #[test]
    fn the_spec_shares_the_host_network_has_no_limits_and_mounts_the_volume() {
        let process = ImageProcess {
            args: vec!["python3".into(), "server.py".into()],
            env: vec![DEFAULT_PATH.into(), "PORT=1".into()],
            cwd: "/app".into(),
            user: String::new(),
        };
        let settings = RunSettings {
            env: vec![("PORT".into(), "8080".into()), ("PYTHONPROFILEIMPORTTIME".into(), "1".into())],
            mounts: vec![BindMount {
                source: "/tmp/volume".into(),
                destination: "/persistent-storage".into(),
                read_only: false,
            }],
            hostname: "imgbake-run".into(),
            open_files: 4096,
        };
        let spec = runtime_spec(&process, (1001, 1002), &settings).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["process"]["args"], serde_json::json!(["python3", "server.py"]));
        assert_eq!(
            json["process"]["env"],
            serde_json::json!([DEFAULT_PATH, "PORT=8080", "PYTHONPROFILEIMPORTTIME=1"]),
            "a variable set by run replaces the image's"
        );
        assert_eq!(json["process"]["terminal"], false);
        assert_eq!(json["process"]["cwd"], "/app");
        assert_eq!(json["process"]["user"]["uid"], 1001);
        assert_eq!(json["process"]["user"]["gid"], 1002);
        assert_eq!(json["root"], serde_json::json!({"path": "rootfs", "readonly": false}));
        assert_eq!(json["hostname"], "imgbake-run");
        let namespaces: Vec<&str> =
            json["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
        assert_eq!(namespaces, ["pid", "ipc", "uts", "mount"]);
        assert!(json["linux"].get("resources").is_none(), "{}", json["linux"]);
        let volume = json["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/persistent-storage")
            .expect("the volume is mounted");
        assert_eq!(volume["type"], "bind");
        assert_eq!(volume["source"], "/tmp/volume");
        assert_eq!(volume["options"], serde_json::json!(["rbind", "rw"]));
        assert_eq!(json["process"]["rlimits"][0]["soft"], 4096);
    }
}
