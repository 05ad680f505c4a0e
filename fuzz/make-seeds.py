#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/.

Seeds are the repository's fixtures and real-shaped samples of each format
(written here, so they are reproducible). `python3 fuzz/make-seeds.py` from
the repository root; docs/fuzzing.md describes the targets.
"""
import gzip
import io
import json
import lzma
import os
import pathlib
import tarfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
SHA = "0" * 63 + "1"
SHA2 = "ab" * 32
COMMIT = "462165984030d82259a11f4367a4eed129e94a7b"


def seed(target, name, data):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (directory / f"seed-{name}").write_bytes(data)


def tar_bytes(entries, fmt=tarfile.PAX_FORMAT):
    """entries: (name, kind, content_or_target, mode)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, kind, value, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if kind == "file":
                data = value.encode() if isinstance(value, str) else value
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = value
                tar.addfile(info)
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = value
                tar.addfile(info)
    return out.getvalue()


def ar_bytes(members):
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += header + data
        if len(data) % 2:
            out += b"\n"
    return bytes(out)


CONTROL = """Package: hello-fuzz
Version: 1:2.10-3+b1
Architecture: amd64
Maintainer: Fuzz <fuzz@example.org>
Installed-Size: 12
Depends: libc6 (>= 2.34), libfoo1 | libbar2 (<< 3~), python3:any, libx [amd64 !i386]
Pre-Depends: dpkg (>= 1.19.1)
Provides: hello-virtual (= 2.10)
Conflicts: hello-old
Breaks: other (<= 1.0)
Multi-Arch: same
Section: devel
Priority: optional
Description: a package for the fuzzer
 with a continuation line
 .
 and an empty one
"""

POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ]; then
    update-alternatives --install /usr/bin/hello hello /usr/bin/hello-fuzz 50 \\
        --slave /usr/share/man/man1/hello.1.gz hello.1.gz /usr/share/man/man1/hello-fuzz.1.gz
fi
dpkg-maintscript-helper rm_conffile /etc/hello.conf 2.0 -- "$@"
"""


def deb(data_ext="xz", control_ext="gz"):
    control = tar_bytes(
        [("./", "dir", None, 0o755), ("./control", "file", CONTROL, 0o644), ("./postinst", "file", POSTINST, 0o755),
         ("./md5sums", "file", "d41d8cd98f00b204e9800998ecf8427e  usr/bin/hello-fuzz\n", 0o644)],
        fmt=tarfile.GNU_FORMAT,
    )
    data = tar_bytes(
        [("./", "dir", None, 0o755), ("./usr/", "dir", None, 0o755), ("./usr/bin/", "dir", None, 0o755),
         ("./usr/bin/hello-fuzz", "file", "#!/bin/sh\necho hi\n", 0o755),
         ("./usr/bin/hello-link", "symlink", "hello-fuzz", 0o777),
         ("./usr/bin/hello-hard", "hardlink", "./usr/bin/hello-fuzz", 0o755),
         ("./bin/", "dir", None, 0o755), ("./bin/hello-merged", "file", "x", 0o4755)],
        fmt=tarfile.GNU_FORMAT,
    )
    compress = {"xz": lzma.compress, "gz": gzip.compress, "": lambda b: b}
    suffix = lambda ext: f".{ext}" if ext else ""
    return ar_bytes([
        ("debian-binary", b"2.0\n"),
        (f"control.tar{suffix(control_ext)}", compress[control_ext](control)),
        (f"data.tar{suffix(data_ext)}", compress[data_ext](data)),
    ])


def main():
    # Configs: every fixture of the repository, by the loader it goes to.
    for path in sorted((ROOT / "fixtures").rglob("*")):
        name = path.relative_to(ROOT / "fixtures").as_posix().replace("/", "_")
        if path.suffix == ".toml":
            seed("cerebrium_toml", name, path.read_bytes())
        elif path.suffix in (".yaml", ".yml"):
            seed("truss_yaml", name, path.read_bytes())
    seed("imgbake_section", "design", f"""target = "cerebrium"
weights_mode = "auto"
compression = "zstd"

[[imgbake.weights]]
source = "hf://stabilityai/stable-diffusion-xl-base-1.0@{COMMIT}"
mount = "sdxl-base"
allow_patterns = ["*.json", "*.fp16.safetensors"]
ignore_patterns = []
secret = "HF_TOKEN"
mode = "volume"
layout = "hf-cache"

[[imgbake.weights]]
source = "s3://bucket/models/llama"
mount = "/models/llama"
mode = "bake"

[[imgbake.weights]]
source = "./weights"
mount = "local"
""")

    seed("weights_manifest", "two-entries", json.dumps({
        "schema": "imgbake.weights-manifest/v1", "app": "fuzz", "target": "cerebrium",
        "entries": [{
            "origin": "imgbake.weights[0]", "source": f"hf://org/repo@{COMMIT}", "kind": "hf",
            "revision": COMMIT, "path": "/app/model_cache/repo", "volume_path": "/persistent-storage/imgbake/org--repo",
            "layout": "hf-cache", "credential": "HF_TOKEN", "total_size": 3,
            "files": [{"path": "config.json", "size": 3, "sha256": SHA2,
                       "url": f"https://huggingface.co/org/repo/resolve/{COMMIT}/config.json",
                       "links": ["snapshots/x/config.json"]}],
        }],
    }, indent=2))

    oci = ROOT / "target" / "imgbake-fixtures" / "bookworm-python-oci"
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": f"sha256:{SHA}", "size": 1234},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": f"sha256:{SHA2}",
                    "size": 29123456, "annotations": {"a": "b"}},
                   {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                    "digest": f"sha256:{SHA2}", "size": 5, "urls": ["https://x"]}],
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }
    seed("oci_manifest", "manifest", json.dumps(manifest))
    seed("oci_manifest", "docker-list", json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": f"sha256:{SHA}",
                       "size": 529, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
                      {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": f"sha256:{SHA2}",
                       "size": 10, "platform": {"architecture": "amd64", "os": "linux", "os.features": ["x"]}}],
    }))
    if oci.is_dir():
        seed("oci_manifest", "fixture-index", (oci / "index.json").read_bytes())
        for blob in sorted((oci / "blobs" / "sha256").iterdir()):
            if blob.stat().st_size < 20000:
                data = blob.read_bytes()
                target = "oci_config" if b'"rootfs"' in data else "oci_manifest"
                seed(target, f"fixture-{blob.name[:12]}", data)
    seed("oci_config", "docker", r'''{"architecture":"amd64","config":{"Hostname":"","User":"","ExposedPorts":{"80/tcp":{}},"Env":["PATH=/usr/bin"],"Cmd":["bash"],"WorkingDir":"","Entrypoint":null,"Labels":null,"Healthcheck":{"Test":["CMD","true"],"Interval":30000000000}},"created":"2024-01-02T03:04:05.123456789Z","history":[{"created":"2024-01-02T03:04:05Z","created_by":"/bin/sh -c #(nop) ADD file:x in / "},{"created_by":"CMD [\"bash\"]","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:2222222222222222222222222222222222222222222222222222222222222222"]},"variant":"v3","os.version":"1","weight":1.5}''')

    seed("docker_config", "auths", json.dumps({
        "auths": {"https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
                  "ghcr.io": {"auth": "Z2g6dG9rZW46d2l0aDpjb2xvbnM="},
                  "http://127.0.0.1:5000/v2/": {"identitytoken": "tok"}},
        "credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud", "localhost": ""},
    }, indent="\t"))
    seed("registry_auth", "bearer",
         'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull,push"')
    seed("registry_auth", "basic", 'Basic realm="Registry Realm"')
    seed("registry_auth", "bearer-unquoted", 'bearer realm=https://r.example/token, service=r , scope="a:b:pull"')
    seed("registry_auth", "errors", json.dumps({"errors": [
        {"code": "UNAUTHORIZED", "message": "authentication required", "detail": [{"Type": "repository"}]},
        {"code": "MANIFEST_UNKNOWN", "message": " manifest unknown \n"}]}))
    seed("registry_auth", "helper", json.dumps({"ServerURL": "ghcr.io", "Username": "<token>", "Secret": "s3cr3t"}))

    seed("hub_revision", "sdxl", json.dumps({
        "_id": "x", "id": "org/repo", "sha": COMMIT, "lastModified": "2024-01-01T00:00:00.000Z",
        "siblings": [{"rfilename": ".gitattributes"}, {"rfilename": "config.json"},
                     {"rfilename": "unet/diffusion_pytorch_model.fp16.safetensors"},
                     {"rfilename": "model.safetensors"}, {"rfilename": "config.json"}],
    }))
    seed("hub_revision", "traversal", json.dumps({"sha": COMMIT, "siblings": [{"rfilename": "../../etc/passwd"}]}))

    seed("object_secret", "s3", json.dumps({"aws_access_key_id": "AKIAFUZZFUZZ", "aws_secret_access_key": "c2VjcmV0",
                                             "aws_region": "eu-west-1"}))
    seed("object_secret", "gcs", json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "k",
                                              "private_key": "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n",
                                              "client_email": "a@p.iam.gserviceaccount.com"}))
    seed("object_secret", "azure", json.dumps({"account_key": "a2V5a2V5", "account_name": "acct"}))

    release = f"""Origin: Debian
Label: Debian
Suite: stable
Codename: bookworm
Date: Sat, 09 Nov 2024 10:06:57 UTC
Architectures: all amd64 arm64
Components: main contrib non-free-firmware
NotAutomatic: yes
SHA256:
 {SHA2} 100 main/binary-amd64/Packages
 {SHA2.upper()} 42 main/binary-amd64/Packages.xz
 {SHA} 77 main/binary-amd64/Packages.gz
"""
    signed = ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" + release.replace("\nDate", "\n- Date") +
              "-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCgAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n")
    seed("apt_release", "inrelease", signed)
    seed("apt_release", "release", release)
    seed("apt_release", "sources",
         "deb http://deb.debian.org/debian bookworm main contrib\n# comment\ndeb [arch=amd64 signed-by=/x.gpg] "
         "http://security.debian.org/debian-security bookworm-security main\n")
    seed("apt_release", "deb822", "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
         "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    seed("apt_release", "os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
         'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n')

    packages = f"""Package: hello-fuzz
Version: 1:2.10-3+b1
Installed-Size: 12
Maintainer: Fuzz <fuzz@example.org>
Architecture: amd64
Depends: libc6 (>= 2.34), libfoo1 | libbar2 (<< 3~)
Provides: hello-virtual (= 2.10)
Essential: yes
Priority: required
Filename: pool/main/h/hello/hello-fuzz_2.10-3+b1_amd64.deb
Size: 53124
SHA256: {SHA2}
Description: a package

Package: libc6
Version: 2.36-9+deb12u9
Architecture: amd64
Multi-Arch: same
Priority: optional
Filename: pool/main/g/glibc/libc6_2.36-9+deb12u9_amd64.deb
Size: 2757936
SHA256: {SHA}
"""
    seed("apt_packages", "packages", packages)
    seed("apt_packages", "status", "Package: libc6\nStatus: install ok installed\nPriority: optional\n"
         "Architecture: amd64\nMulti-Arch: same\nVersion: 2.36-9+deb12u9\nProvides: libc6-x\n\n"
         "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: all\n")
    seed("deb_control", "control", CONTROL)
    seed("deb_control", "postinst", POSTINST)
    seed("deb_control", "relations", "a (>= 1:2.0-1~bpo1) [amd64] <!nocheck>, b:any | c (= 3), d (<< 4) | e [!arm64]")

    seed("deb_archive", "xz-gz", deb("xz", "gz"))
    seed("deb_archive", "plain", deb("", ""))
    seed("deb_archive", "gz-xz", deb("gz", "xz"))

    seed("conda_answer", "solve", json.dumps({"packages": [
        {"name": "python", "version": "3.11.9", "build": "hb806964_0_cpython", "channel": "conda-forge",
         "subdir": "linux-64", "url": "https://conda.anaconda.org/conda-forge/linux-64/python-3.11.9-hb806964_0_cpython.conda",
         "sha256": SHA2, "size": 30884794},
        {"name": "openssl", "version": "3.3.1", "build": "h4ab18f5_0", "channel": "conda-forge", "subdir": "linux-64",
         "url": "https://conda.anaconda.org/conda-forge/linux-64/openssl-3.3.1-h4ab18f5_0.conda", "sha256": SHA,
         "size": 2892042}]}))

    seed("pylock", "uv", f"""lock-version = "1.0"
created-by = "uv"
requires-python = ">=3.11"

[[packages]]
name = "numpy"
version = "2.1.0"
index = "https://pypi.org/simple"
wheels = [
    {{ url = "https://files.pythonhosted.org/packages/x/numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", upload-time = 2024-08-18T00:00:00Z, size = 16000000, hashes = {{ sha256 = "{SHA2}" }} }},
    {{ url = "https://files.pythonhosted.org/packages/x/numpy-2.1.0-cp311-cp311-win_amd64.whl", size = 1, hashes = {{ sha256 = "{SHA}" }} }},
]

[[packages]]
name = "tomli"
version = "2.0.1"
marker = "python_full_version < '3.11'"
wheels = [{{ url = "https://files.pythonhosted.org/packages/x/tomli-2.0.1-py3-none-any.whl", hashes = {{ sha256 = "{SHA}" }} }}]

[[packages]]
name = "mypkg"
version = "0.1"
sdist = {{ url = "https://files.pythonhosted.org/packages/x/mypkg-0.1.tar.gz", size = 100, hashes = {{ sha256 = "{SHA}" }} }}

[[packages]]
name = "gitpkg"
vcs = {{ type = "git", url = "https://github.com/org/gitpkg", requested-revision = "main", commit-id = "{COMMIT}", subdirectory = "py" }}

[[packages]]
name = "local"
directory = {{ path = "./local" }}
""")
    seed("pip_report", "report", json.dumps({"version": "1", "pip_version": "25.0", "install": [
        {"metadata": {"name": "Requests", "version": "2.32.3"}, "is_direct": False, "requested": True,
         "download_info": {"url": "https://files.pythonhosted.org/packages/x/requests-2.32.3-py3-none-any.whl",
                           "archive_info": {"hash": f"sha256={SHA2}", "hashes": {"sha256": SHA2}}}},
        {"metadata": {"name": "mypkg", "version": "0.1"},
         "download_info": {"url": "https://github.com/org/mypkg", "vcs_info": {"vcs": "git", "commit_id": COMMIT,
                                                                              "requested_revision": "main"}}},
        {"metadata": {"name": "sdist-only", "version": "1.0"},
         "download_info": {"url": "https://files.pythonhosted.org/packages/x/sdist-only-1.0.tar.gz",
                           "archive_info": {"hashes": {"sha256": SHA}}}}]}))

    seed("lock_file", "lock", f"""# imgbake.lock: written by `imgbake lock` / `imgbake build`; commit it, do not edit it.
version = 1

[inputs]
base = "python:3.11-slim"
python_version = "3.11"
installer = "uv"
pip = ["torch==2.4.0", "numpy"]
pip_file_sha256 = "{SHA}"
apt = ["ffmpeg"]
conda = ["openssl"]
conda_channels = ["conda-forge"]
weights = ["hf://org/repo@{COMMIT}"]

[base]
image = "python:3.11-slim"
pinned = "docker.io/library/python@sha256:{SHA2}"

[python]
installer = "uv"

[python.target]
python_version = "3.11"
platform = "x86_64-manylinux_2_36"
interpreter = "/usr/local/bin/python3.11"
site_packages = "/usr/local/lib/python3.11/site-packages"

[[python.packages]]
name = "numpy"
version = "2.1.0"
url = "https://files.pythonhosted.org/packages/x/numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
sha256 = "{SHA2}"
size = 16000000

[[python.packages]]
name = "mypkg"
version = "0.1"
url = "built:mypkg-0.1-py3-none-any.whl"
sha256 = "{SHA}"
size = 1200

[python.packages.built_from]
kind = "git"
url = "https://github.com/org/mypkg"
commit = "{COMMIT}"
requested_revision = "main"

[apt]
distribution = "debian bookworm"

[[apt.packages]]
name = "ffmpeg"
version = "7:5.1.6-0+deb12u1"
arch = "amd64"
url = "http://deb.debian.org/debian/pool/main/f/ffmpeg/ffmpeg_5.1.6-0+deb12u1_amd64.deb"
sha256 = "{SHA2}"
size = 1800000

[conda]

[conda.target]
channels = ["conda-forge"]
platform = "linux-64"
prefix = "/opt/conda"
glibc = "2.36"

[[conda.packages]]
name = "openssl"
version = "3.3.1"
build = "h4ab18f5_0"
subdir = "linux-64"
url = "https://conda.anaconda.org/conda-forge/linux-64/openssl-3.3.1-h4ab18f5_0.conda"
sha256 = "{SHA}"
size = 2892042
channel = "conda-forge"

[[weights]]
source = "hf://org/repo@{COMMIT}"
revision = "{COMMIT}"
path = "config.json"
size = 3
sha256 = "sha256:{SHA2}"
etag = "\\"abc\\""
""")
    seed("profile", "override", """base = "cerebrium"

[params]
registry_bandwidth = 2.5e8
unpack_zstd = 400000000
unpack_overlaps_pull = 0.5
prefetch_jobs = 8
app_start_seconds = 3

[sources]
registry_bandwidth = "measured on 2024-06-01"
""")
    seed("profile", "bad-key", 'base = "generic"\n[params]\nregistry_bandwith = 1\n')

    status = "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u9\nArchitecture: amd64\n"
    lower = tar_bytes([
        ("etc/", "dir", None, 0o755), ("etc/os-release", "file", 'ID=debian\nVERSION_CODENAME=bookworm\n', 0o644),
        ("bin", "symlink", "usr/bin", 0o777), ("usr/bin/", "dir", None, 0o755),
        ("usr/bin/python3.11", "file", "ELF", 0o755), ("usr/bin/python3", "symlink", "python3.11", 0o777),
        ("usr/lib/python3.11/os.py", "file", "", 0o644), ("var/lib/dpkg/status", "file", status, 0o644),
        ("etc/apt/sources.list.d/debian.sources", "file", "Types: deb\nURIs: http://deb.debian.org/debian\n", 0o644),
        ("usr/share/keyrings/debian-archive-keyring.gpg", "file", b"\x99\x02\x0d\x04", 0o644),
        ("usr/local/lib/python3.11/site-packages/", "dir", None, 0o755),
    ])
    upper = tar_bytes([
        ("etc/.wh.os-release", "file", "", 0o644), ("usr/bin/.wh..wh..opq", "file", "", 0o644),
        ("usr/bin/app", "file", "#!/bin/sh", 0o755), ("./entrypoint.sh", "file", "", 0o755),
        ("var/run", "symlink", "../run", 0o777),
    ], fmt=tarfile.USTAR_FORMAT)
    seed("base_layer", "lower", lower)
    seed("base_layer", "two-layers", lower + b"\0\0LAYER\0\0" + upper)


if __name__ == "__main__":
    main()
