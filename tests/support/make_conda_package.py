"""Writes a real (tiny) conda package into a channel directory, for tests:
make_conda_package.py CHANNEL NAME VERSION [--depends "dep >=1"]... [--file PATH=TEXT]...

The package is noarch, build `0`, in the .tar.bz2 format: info/index.json,
info/paths.json, info/files and the given files. A file's text may contain
the prefix placeholder `@PREFIX@`, which conda installers replace with the
environment's prefix.
"""
import argparse, hashlib, io, json, os, tarfile

PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
p = argparse.ArgumentParser()
p.add_argument("channel"); p.add_argument("name"); p.add_argument("version")
p.add_argument("--depends", action="append", default=[])
p.add_argument("--file", action="append", default=[])
a = p.parse_args()
files = {}
for item in a.file or [f"share/{a.name}/VERSION={a.version}\n"]:
    path, text = item.split("=", 1)
    files[path] = text.replace("\\n", "\n").replace("@PREFIX@", PLACEHOLDER).encode()
paths = []
for path, data in sorted(files.items()):
    entry = {"_path": path, "path_type": "hardlink", "sha256": hashlib.sha256(data).hexdigest(), "size_in_bytes": len(data)}
    if PLACEHOLDER.encode() in data:
        entry.update(file_mode="text", prefix_placeholder=PLACEHOLDER)
    paths.append(entry)
index = {"name": a.name, "version": a.version, "build": "0", "build_number": 0, "depends": a.depends,
         "subdir": "noarch", "noarch": "generic", "license": "MIT", "timestamp": 1577836800000}
meta = {"info/index.json": json.dumps(index).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}).encode(),
        "info/files": ("\n".join(sorted(files)) + "\n").encode()}
os.makedirs(os.path.join(a.channel, "noarch"), exist_ok=True)
os.makedirs(os.path.join(a.channel, "linux-64"), exist_ok=True)
out = os.path.join(a.channel, "noarch", f"{a.name}-{a.version}-0.tar.bz2")
with tarfile.open(out, "w:bz2") as tar:
    for path, data in list(meta.items()) + list(files.items()):
        info = tarfile.TarInfo(path); info.size = len(data); info.mtime = 1577836800; info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
