"""Writes a real (tiny) wheel or sdist for tests: make_wheel.py OUT_DIR NAME VERSION TAG [--big MIB] [--script] [--sdist].

TAG is the wheel's tag triple, e.g. py3-none-any or cp312-cp312-manylinux_2_17_x86_64.
--big adds a data file of MIB pseudo-random MiB, stored uncompressed (a torch-sized stand-in).
--libs A,B,... adds shared-library stand-ins `<name>/lib/lib<i>.so` of A, B, ... pseudo-random MiB
(torch's two large libraries beside its many modules) and 20 small modules.
--script adds a console script `<name>-hello` that prints the package's version.
--sdist writes only NAME-VERSION.tar.gz (a package with no wheel): a setuptools
project with an importable module; with --platform-specific its build gives a
cpXY-cpXY-linux_x86_64 wheel (a distribution that says it has extension modules).
"""
import argparse, base64, hashlib, io, os, random, tarfile, zipfile

p = argparse.ArgumentParser()
p.add_argument("out"); p.add_argument("name"); p.add_argument("version"); p.add_argument("tag")
p.add_argument("--big", type=int, default=0); p.add_argument("--libs", default=""); p.add_argument("--script", action="store_true")
p.add_argument("--sdist", action="store_true"); p.add_argument("--platform-specific", action="store_true")
a = p.parse_args()
mod = a.name.replace("-", "_")
os.makedirs(a.out, exist_ok=True)

if a.sdist:
    path = os.path.join(a.out, f"{mod}-{a.version}.tar.gz")
    with tarfile.open(path, "w:gz") as tar:
        distclass = ("from setuptools.dist import Distribution\n"
                     "class Binary(Distribution):\n    def has_ext_modules(self):\n        return True\n")
        setup = (f"from setuptools import setup\n{distclass if a.platform_specific else ''}"
                 f"setup(name={a.name!r}, version={a.version!r}, packages=[{mod!r}]"
                 f"{', distclass=Binary' if a.platform_specific else ''})\n")
        for name, text in [("setup.py", setup),
                           (f"{mod}/__init__.py", f"__version__ = {a.version!r}\nbuilt_from = 'sdist'\n"),
                           ("PKG-INFO", f"Metadata-Version: 2.1\nName: {a.name}\nVersion: {a.version}\n")]:
            data = text.encode(); info = tarfile.TarInfo(f"{mod}-{a.version}/{name}"); info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raise SystemExit(0)

files = {f"{mod}/__init__.py": f"__version__ = {a.version!r}\ntag = {a.tag!r}\n".encode()}
dist = f"{mod}-{a.version}.dist-info"
files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {a.name}\nVersion: {a.version}\n".encode()
files[f"{dist}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: imgbake-tests\nRoot-Is-Purelib: {'true' if a.tag.startswith('py3-none') else 'false'}\nTag: {a.tag}\n".encode()
if a.script:
    files[f"{dist}/entry_points.txt"] = f"[console_scripts]\n{a.name}-hello = {mod}:main\n".encode()
    files[f"{mod}/__init__.py"] += b"def main():\n    print(__version__)\n"
big = None
if a.big:
    rng = random.Random(a.name)
    big = (f"{mod}/weights.bin", rng.randbytes(a.big << 20))
stored = {big[0]} if big else set()
if a.libs:
    rng = random.Random(a.name + "-libs")
    for i, mib in enumerate(int(m) for m in a.libs.split(",")):
        files[f"{mod}/lib/lib{i}.so"] = rng.randbytes(mib << 20)
        stored.add(f"{mod}/lib/lib{i}.so")
    for i in range(20):
        files[f"{mod}/nn/module_{i:02}.py"] = f"def forward_{i}(x):\n    return x + {i}\n".encode()
record = []
path = os.path.join(a.out, f"{mod}-{a.version}-{a.tag}.whl")
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
    for name, data in list(files.items()) + ([big] if big else []):
        whl.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data,
                     compress_type=zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    whl.writestr(zipfile.ZipInfo(f"{dist}/RECORD", (2020, 1, 1, 0, 0, 0)), "\n".join(record) + "\n")
