"""The Dockerfiles in docker/, read as text: no Docker engine here, so nothing is built.

Checked: every file they copy exists and is not excluded by their .dockerignore, base images
are pinned, the images run as non-root, no secret is baked in, the worker's entry point and
folders are the operator's, and the model-worker image installs no Airflow and no database
driver: its install list (the perilflow wheel, i.e. setup.cfg install_requires, plus the extra
packages named in the Dockerfile) is expanded through the installed distributions' metadata.
"""

from __future__ import annotations

import configparser
import fnmatch
import re
import shlex
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT

DOCKER = REPO_ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
FORBIDDEN_IN_WORKER = re.compile(r"^(apache-airflow.*|airflow.*|psycopg.*|sqlalchemy.*|alembic|asyncpg|pg8000|"
                                 r"mysqlclient|pymysql|redis|celery|kubernetes.*)$")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|DATABASE_URL|SQL_ALCHEMY_CONN|FERNET|^AWS_", re.I)


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instr in _instructions(path):
        if instr[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instr)
    return stages


def _global_args(path: Path) -> dict[str, str]:
    args = {}
    for word, rest in _instructions(path):
        if word == "FROM":
            break
        if word == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name.strip()] = value.strip()
    return args


def _dockerignore(path: Path) -> list[str]:
    ignore = path.with_name(path.name + ".dockerignore")
    assert ignore.is_file(), f"{ignore.name} missing: the build context is the whole repository"
    return [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _copy_sources(rest: str) -> tuple[list[str], str, dict[str, str]]:
    parts = shlex.split(rest)
    flags = {p.split("=", 1)[0]: p.split("=", 1)[1] if "=" in p else "" for p in parts if p.startswith("--")}
    paths = [p for p in parts if not p.startswith("--")]
    return paths[:-1], paths[-1], flags


def test_there_are_the_three_dockerfiles() -> None:
    assert {p.name for p in DOCKERFILES} == {"platform.Dockerfile", "model-worker.Dockerfile",
                                             "model-data.Dockerfile"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copied_files_exist_and_are_in_the_build_context(path: Path) -> None:
    ignored = _dockerignore(path)
    copies = 0
    for word, rest in _instructions(path):
        if word not in ("COPY", "ADD"):
            continue
        assert word == "COPY", "ADD fetches URLs and unpacks archives; use COPY"
        sources, _, flags = _copy_sources(rest)
        if "--from" in flags:
            continue
        for source in sources:
            copies += 1
            matches = list(REPO_ROOT.glob(source.rstrip("/")))
            assert matches, f"{path.name}: COPY {source}: no such file in the repository"
            top = source.rstrip("/").split("/")[0]
            assert not any(fnmatch.fnmatch(top, pattern) for pattern in ignored), \
                f"{path.name}: COPY {source} is excluded by {path.name}.dockerignore"
    if path.name != "model-data.Dockerfile":
        assert copies >= 4


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned(path: Path) -> None:
    args = _global_args(path)
    stage_names: set[str] = set()
    for word, rest in _instructions(path):
        if word != "FROM":
            continue
        parts = rest.split()
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), parts[0])
        if len(parts) == 3 and parts[1].upper() == "AS":
            stage_names.add(parts[2])
        if image in stage_names:
            continue
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{path.name}: FROM {image} unpinned"


def test_platform_image_is_the_airflow_version_the_project_pins() -> None:
    path = DOCKER / "platform.Dockerfile"
    froms = [rest for word, rest in _instructions(path) if word == "FROM"]
    assert froms == ["apache/airflow:3.3.2-python3.11"]
    pins = (REPO_ROOT / "requirements.txt").read_text()
    assert re.search(r"^apache-airflow==3\.3\.2$", pins, re.M)
    runs = " ".join(rest for word, rest in _instructions(path) if word == "RUN")
    assert "pip install --no-cache-dir -r requirements.txt -c constraints.txt" in runs
    assert "pip install --no-cache-dir --no-deps ." in runs
    copies = [_copy_sources(rest) for word, rest in _instructions(path) if word == "COPY"]
    dags = [dest for sources, dest, _ in copies if sources == ["dags/"]]
    env = " ".join(rest for word, rest in _instructions(path) if word == "ENV")
    assert dags == ["/opt/airflow/dags/"]
    assert "AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/dags" in env


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_as_non_root_and_carry_no_secrets(path: Path) -> None:
    final = _stages(path)[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users, f"{path.name}: the final stage sets no USER (it would run as root)"
    assert users[-1].split(":")[0] not in ("root", "0"), f"{path.name}: runs as {users[-1]}"
    for word, rest in _instructions(path):
        if word in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_.-]*)(?==|\s|$)", rest)
            assert not [n for n in names if SECRET_NAME.search(n)], f"{path.name}: {word} {rest}"
        if word == "COPY":
            assert not re.search(r"\.env\b|credentials|\.pem|\.key\b|kubeconfig", rest), f"{path.name}: COPY {rest}"


def test_model_worker_runs_the_worker_contract() -> None:
    path = DOCKER / "model-worker.Dockerfile"
    final = _stages(path)[-1]
    assert ("ENTRYPOINT", '["perilflow-worker"]') in final
    env = " ".join(rest for word, rest in final if word == "ENV")
    source = (REPO_ROOT / "operators" / "model_step.py").read_text()
    for var, const in (("PERILFLOW_MODEL_ROOT", "MODELS_MOUNT"), ("PERILFLOW_WORK_DIR", "WORK_MOUNT")):
        mount = re.search(rf'^{const} = "([^"]+)"', source, re.M).group(1)
        assert f"{var}={mount}" in env, f"{var} must be the operator's {const} ({mount})"
    assert "NUMBA_CACHE_DIR=/var/cache/perilflow/numba" in env
    # the numba cache is warmed at build, as the runtime user, after everything is installed
    words = [word for word, _ in final]
    warm = next(i for i, (word, rest) in enumerate(final) if word == "RUN" and "perilflow warm-up" in rest)
    assert words.index("USER") < warm
    assert max(i for i, (word, rest) in enumerate(final) if word == "RUN" and "pip install" in rest) < warm
    entry = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert entry["perilflow-worker"] == "perilflow.kernel.worker:main"


def _install_requires() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    return [line.strip() for line in cfg["options"]["install_requires"].splitlines() if line.strip()]


def _closure(requirements: list[str]) -> set[str]:
    """Canonical names of the requirements and everything they pull in (per the installed metadata)."""
    env = default_environment()
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req.name} is not installed in this venv; `make install` first", pytrace=False)
        extras = req.extras
        for dep in dist.requires or []:
            dep_req = Requirement(dep)
            if dep_req.marker is not None:
                if not any(dep_req.marker.evaluate({**env, "extra": e}) for e in (extras or {""})):
                    continue
                dep_req.marker = None
            todo.append(dep_req)
    return seen


def _worker_install_list() -> list[str]:
    """What the model-worker image pip-installs: the perilflow wheel becomes setup.cfg's install_requires."""
    final = _stages(DOCKER / "model-worker.Dockerfile")[-1]
    wanted: list[str] = []
    for word, rest in final:
        if word != "RUN" or "pip install" not in rest:
            continue
        for command in rest.split("&&"):
            tokens = shlex.split(command)
            if tokens[:2] != ["pip", "install"]:
                continue
            skip = False
            for token in tokens[2:]:
                if skip:
                    skip = False
                elif token in ("-c", "--constraint"):
                    skip = True
                elif token in ("-r", "--requirement") or token.startswith("-r"):
                    pytest.fail(f"the worker image installs a requirements file ({command.strip()}); "
                                "requirements.txt holds Airflow")
                elif token.startswith("-"):
                    continue
                elif token.endswith(".whl") and "perilflow" in token:
                    wanted += _install_requires()
                elif token in (".", "/src"):
                    wanted += _install_requires()
                else:
                    wanted.append(token)
    return wanted


def test_model_worker_installs_no_airflow_and_no_database_driver() -> None:
    wanted = _worker_install_list()
    assert {canonicalize_name(Requirement(r).name) for r in _install_requires()} <= {
        canonicalize_name(Requirement(r).name) for r in wanted}, "the worker image must install the perilflow wheel"
    assert "s3fs" in wanted, "s3:// storage needs s3fs in the worker image"
    closure = _closure(wanted)
    assert {"numba", "numpy", "pandas", "pyarrow", "ods-tools", "s3fs"} <= closure
    bad = sorted(name for name in closure if FORBIDDEN_IN_WORKER.match(name))
    assert not bad, f"the model-worker image would install {bad}"
