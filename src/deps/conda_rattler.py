"""imgbake's bridge to rattler (the conda engine behind pixi), through its
Python bindings (py-rattler, from PyPI). Run by src/deps/conda.rs with one
JSON request on stdin; answers one JSON document on stdout; errors go to
stderr with exit status 1.

    {"op": "solve", "channels": [...], "specs": [...], "platform": "linux-64",
     "virtual_packages": {"__glibc": "2.36", ...}}
        -> {"packages": [{"name", "version", "build", "subdir", "url", "sha256", "size", "channel"}]}
    {"op": "install", "channels": [...], "platform": ..., "virtual_packages": ...,
     "packages": [<as above>], "staging": DIR, "prefix": "/opt/conda", "cache_dir": DIR}
        -> {"installed": N}

install re-solves with every package pinned to its exact version and build,
checks each sha256 against the lock, then links into `staging` with
`prefix` written into the files' hard-coded paths (alternative_target_prefix).
"""
import asyncio
import json
import os
import sys

import rattler


def virtual_packages(spec):
    return [rattler.GenericVirtualPackage(rattler.PackageName(name), rattler.Version(version), rattler.BuildString("0"))
            for name, version in sorted((spec or {}).items())]


async def solve(request, specs):
    records = await rattler.solve(
        sources=request["channels"],
        specs=specs,
        platforms=[request["platform"], "noarch"],
        virtual_packages=virtual_packages(request.get("virtual_packages")),
    )
    return sorted(records, key=lambda r: r.name.normalized)


def describe(record):
    return {
        "name": record.name.normalized,
        "version": str(record.version),
        "build": str(record.build),
        "subdir": record.subdir,
        "url": str(record.url),
        "sha256": record.sha256.hex() if record.sha256 else "",
        "size": record.size or 0,
        "channel": str(record.channel or ""),
    }


async def main():
    request = json.load(sys.stdin)
    if request["op"] == "solve":
        records = await solve(request, request["specs"])
        print(json.dumps({"packages": [describe(r) for r in records]}))
        return
    locked = request["packages"]
    specs = [f"{p['name']} =={p['version']} {p['build']}" for p in locked]
    records = await solve(request, specs)
    by_name = {r.name.normalized: r for r in records}
    for package in locked:
        record = by_name.get(package["name"])
        found = record.sha256.hex() if record is not None and record.sha256 else None
        if found != package["sha256"]:
            raise SystemExit(f"{package['name']} {package['version']} {package['build']}: the channel now has "
                             f"sha256 {found}, the lock says {package['sha256']}")
    await rattler.install(
        records,
        target_prefix=request["staging"],
        alternative_target_prefix=request["prefix"],
        cache_dir=request["cache_dir"],
        platform=rattler.Subdir(request["platform"]),
        execute_link_scripts=False,
        show_progress=False,
    )
    tidy(request["staging"])
    print(json.dumps({"installed": len(records)}))


def tidy(staging):
    """Drops what holds the build machine's paths or times, so layers are reproducible."""
    for name in ("CACHEDIR.TAG", os.path.join("conda-meta", "history")):
        try:
            os.remove(os.path.join(staging, name))
        except FileNotFoundError:
            pass
    meta = os.path.join(staging, "conda-meta")
    for name in sorted(os.listdir(meta)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(meta, name)
        with open(path) as f:
            record = json.load(f)
        record.pop("extracted_package_dir", None)
        if isinstance(record.get("link"), dict):
            record["link"].pop("source", None)
        with open(path, "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.write("\n")


# py-rattler 0.28 can crash while the interpreter shuts down (its runtime's
# threads outlive the module), so leave with os._exit once output is flushed.
status = 0
try:
    asyncio.run(main())
except SystemExit as stop:
    if stop.code not in (None, 0):
        print(stop.code, file=sys.stderr)
        status = 1
except Exception as error:  # one line for imgbake to show
    print(f"{type(error).__name__}: {error}", file=sys.stderr)
    status = 1
sys.stdout.flush()
sys.stderr.flush()
os._exit(status)
