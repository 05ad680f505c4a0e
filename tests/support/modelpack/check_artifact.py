"""Reads a ModelPack artifact back with the ORAS Python client (a third party):
check_artifact.py HOST REPOSITORY:TAG OUTDIR SCHEMA

Pulls the manifest and every layer blob (`oras` saves each under its title
annotation), checks each blob's sha256 against the manifest, validates the
config blob against the model-spec JSON schema, unpacks the layer tars into
OUTDIR/files, and prints JSON: {"manifest": …, "config": …, "files": {path: sha256}}.
"""
import hashlib, json, os, sys, tarfile

import jsonschema
import oras.client

host, target, outdir, schema_path = sys.argv[1:5]
client = oras.client.OrasClient(hostname=host, insecure=True)
reference = f"{host}/{target}"
manifest = client.get_manifest(client.get_container(reference))
blobs = client.pull(target=reference, outdir=os.path.join(outdir, "blobs"))
by_name = {os.path.basename(path): path for path in blobs}

files_dir = os.path.join(outdir, "files")
os.makedirs(files_dir, exist_ok=True)
for layer in manifest["layers"]:
    path = by_name[layer["annotations"]["org.opencontainers.image.title"]]
    data = open(path, "rb").read()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"], layer
    with tarfile.open(path) as tar:
        tar.extractall(files_dir, filter="data")

container = client.get_container(reference)
response = client.get_blob(container, manifest["config"]["digest"])
config = response.json()
jsonschema.validate(config, json.load(open(schema_path)))

files = {}
for root, _, names in os.walk(files_dir):
    for name in names:
        path = os.path.join(root, name)
        files[os.path.relpath(path, files_dir)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
print(json.dumps({"manifest": manifest, "config": config, "files": files}))
