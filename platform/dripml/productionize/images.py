"""Images: a registered model's serving image, built, pushed and recorded by digest.

``drip build adult@champion --registry registry.example.com/ml/adult-serving`` comes down to:

1. :func:`plan_build` pins the model version in the MLflow Model Registry and decides the
   image: repository and tag (``adult-3``, ``adult-3-gpu``), base image, Containerfile and the
   pinned runtime requirements (the model's logged ``requirements.txt`` without MLflow, plus
   the server, each pinned with its dependencies to the versions installed here, so pip never
   resolves anything new and the image never gets Ray, KFP or torch for a GBM model).
   :func:`make_plan` is the same decision without the registry (what the tests check).
2. :func:`prepare_context` writes the build context (a temporary folder, removed after the
   push): the model exported as a bundle (:func:`dripml.productionize.serving.write_bundle`;
   the endpoint never needs the MLflow server), a BentoML bento built from it (``bentoml
   build``, service ``dripml.productionize.service:DripmlService``), a wheel of dripml from
   this checkout (installed with ``--no-deps``), ``requirements.txt`` and the Containerfile
   from ``containers/serving/``.
3. :func:`build_and_push` builds with buildah (daemonless, the default) or docker, pushes, reads
   the pushed manifest digest and measures the image size (uncompressed, as ``docker images``
   shows it; a LightGBM model's CPU image is about 650 MB, 220 MB compressed).
4. :func:`record` tags the model version: ``dripml.image`` = ``REPO@sha256:<64 hex>`` (what
   ``drip deploy`` reads), ``dripml.image_size_mb`` and ``dripml.image_base``.

:func:`build` runs all four. Base images are settings (:func:`dripml.settings.base_image`):
the ``base_image`` argument, else ``DRIPML_BASE_IMAGE`` / ``DRIPML_GPU_BASE_IMAGE``, else
:data:`DEFAULT_BASE_IMAGE` / :data:`DEFAULT_GPU_BASE_IMAGE`. Nothing else is read from the
environment but what the builder itself reads (its registry credentials); the child
processes that write the context get the environment without credential-like variables, and
no credential reaches the context, the image or a tag.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from dripml import settings
from dripml.core.refs import ModelRef
from dripml.errors import DripmlError, ImageError
from dripml.productionize.deploy import IMAGE_TAG, Image, loopback_registry, parse_image

# The base images are settings; these names stay importable from here.
DEFAULT_BASE_IMAGE = settings.DEFAULT_BASE_IMAGE
"""CPU base: any image with ``python3.11`` and ``useradd`` (Debian or Ubuntu based)."""

DEFAULT_GPU_BASE_IMAGE = settings.DEFAULT_GPU_BASE_IMAGE
"""GPU base: a CUDA runtime image; Python 3.11 comes from uv
(``containers/serving/Containerfile.gpu``)."""

BASE_IMAGE_ENV = settings.BASE_IMAGE.name
GPU_BASE_IMAGE_ENV = settings.GPU_BASE_IMAGE.name

BUILDERS = ("buildah", "docker")
"""Image builders: buildah (daemonless, the default) or a Docker engine."""

SIZE_TAG = "dripml.image_size_mb"
"""Model version tag: the image's uncompressed size, MB (10^6 bytes)."""

BASE_TAG = "dripml.image_base"
"""Model version tag: the base image the serving image was built FROM."""


SERVING_PORT = 3000
"""The port the image listens on unless ``BENTOML_PORT`` says otherwise."""

IMAGE_USER = "10001:10001"
"""The non-root user and group the image runs as (the endpoint chart's ``runAsUser``)."""

MODEL_PATH_IN_IMAGE = "/opt/dripml/bento/src/model"
"""Where the model bundle lies in the image (the image sets ``DRIPML_MODEL_PATH`` to it)."""

SERVING_PACKAGES = ("bentoml", "pydantic", "pyyaml", "httpx", "cloudpickle", "numpy", "pandas",
                    "scikit-learn", "httptools", "uvloop")
"""What the server imports whatever the model (dripml is installed from its wheel without
dependencies; its serving path imports only these and the model's own libraries)."""

PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
"""Where a CPU image gets a ``+cpu`` torch build (PyPI's torch pulls the CUDA libraries)."""

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(r"^(localhost|\[[0-9a-fA-F:]+\]|[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)+|"
                   r"[a-zA-Z0-9-]+)(:[0-9]{1,5})?$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")


# --------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Registry:
    """Where images go: ``host`` (``HOST[:PORT]``) and ``repository`` (the path below it)."""

    host: str
    repository: str

    @property
    def name(self) -> str:
        """``HOST[:PORT]/REPO``: the image repository without tag or digest."""
        return f"{self.host}/{self.repository}"

    @property
    def insecure(self) -> bool:
        """A loopback registry is spoken to over plain HTTP (no TLS verification)."""
        return loopback_registry(self.name)


@dataclass(frozen=True)
class BuildPlan:
    """Everything one image build does, decided before anything is built.

    Attributes:
        name, version: the registered model version (``version`` pinned, never an alias).
        registry: where the image is pushed.
        tag: the image tag, ``NAME-VERSION`` (``-gpu`` for a GPU image).
        gpu: a CUDA image (``containers/serving/Containerfile.gpu``).
        base_image: the image the final stage is built FROM.
        build_image: the image packages are installed in (the build stage); the same Python
            as ``base_image``. Defaults to ``base_image``; tests pass one with extra CA
            certificates, which stay in that stage.
        builder: ``buildah`` or ``docker``.
        containerfile: the Containerfile used.
        requirements: pinned runtime requirements, one pip requirement line each.
        system_packages: apt packages the final stage installs: those the algorithm
            declarations name for a requirement the image installs (LightGBM loads
            the system's OpenMP runtime, ``libgomp1``); see :mod:`dripml.algorithms`.
        algorithm: the model's algorithm (from its version tags; may be empty).
    """

    name: str
    version: str
    registry: Registry
    tag: str
    gpu: bool
    base_image: str
    build_image: str
    builder: str
    containerfile: Path
    requirements: tuple[str, ...]
    system_packages: tuple[str, ...] = ()
    algorithm: str = ""

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def version_label(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def reference(self) -> str:
        """``REPO:TAG``, the name the image is built and pushed under."""
        return f"{self.registry.name}:{self.tag}"

    @property
    def build_args(self) -> dict[str, str]:
        return {"BASE_IMAGE": self.base_image, "BUILD_IMAGE": self.build_image,
                "MODEL_URI": self.model_uri, "SYSTEM_PACKAGES": " ".join(self.system_packages)}


@dataclass(frozen=True)
class BuildResult:
    """A built and pushed serving image.

    Attributes:
        plan: what was built.
        image: the pushed image by digest (``image.reference`` is ``REPO@sha256:<64 hex>``).
        size_mb: uncompressed size of the image, MB (10^6 bytes).
        build_s, push_s: wall time of the build (bundle, bento, wheel, image) and the push, s.
        context: the build context folder; None when it was a temporary folder, removed
            after the push.
        recorded: the tags set on the model version (empty if not recorded).
    """

    plan: BuildPlan
    image: Image
    size_mb: float
    build_s: float
    push_s: float
    context: Path | None
    recorded: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------- parsing


def parse_registry(text: str) -> Registry:
    """``HOST[:PORT]/REPO`` -> :class:`Registry` (``127.0.0.1:5000/dripml/adult``).

    Raises:
        ImageError: naming ``text``: no host, no repository, a tag or digest given, or
            characters an image reference cannot hold.
    """
    value = text.strip()
    host, _, path = value.partition("/")
    problem = None
    if not path:
        problem = "it has no repository after the host"
    elif "@" in value or ":" in path:
        problem = "it carries a tag or digest (drip build chooses the tag and reports the digest)"
    elif not _HOST.match(host) or not ("." in host or ":" in host or host == "localhost"):
        problem = "its first part is not a registry host (a name with a dot or a port)"
    elif not _PATH.match(path):
        problem = ("the repository may hold only lowercase letters, digits and separators "
                   "(. _ - /)")
    if problem:
        raise ImageError(f"invalid registry {text!r}: {problem}; expected HOST[:PORT]/REPO, "
                         f"e.g. registry.example.com/ml/adult-serving or "
                         f"127.0.0.1:5000/dripml/adult")
    return Registry(host=host, repository=path)


def parse_digest(text: str) -> str:
    """The one ``sha256:<64 hex>`` in a builder's output (a digest file, ``docker push``'s
    ``latest: digest: sha256:... size: N`` line).

    Raises:
        ImageError: no digest, or several different ones.
    """
    found = set(_DIGEST.findall(text))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} different"
        raise ImageError(f"expected one image digest (sha256:<64 hex>) in the push output, "
                         f"found {what}: {text.strip()[-300:]!r}")
    return found.pop()


def check_builder(builder: str) -> None:
    """Raises ImageError unless ``builder`` is one of :data:`BUILDERS`."""
    if builder not in BUILDERS:
        raise ImageError(f"unknown builder {builder!r}; valid builders: {list(BUILDERS)}")


def image_tag(name: str, version: str, *, gpu: bool = False) -> str:
    """The image tag of a model version: ``NAME-VERSION`` (``-gpu``), lowercase, at most 128
    characters of ``[a-z0-9_.-]``."""
    tag = re.sub(r"[^a-z0-9_.-]+", "-", f"{name}-{version}".lower()).strip("-.")
    tag = tag or f"model-{version}"
    return (tag[:124] + "-gpu") if gpu else tag[:128]


# --------------------------------------------------------------------------------- planning


def base_image_for(gpu: bool, base_image: str | None = None,
                   environ: Mapping[str, str] | None = None) -> str:
    """The base image: ``base_image``, else ``DRIPML_GPU_BASE_IMAGE`` / ``DRIPML_BASE_IMAGE``,
    else :data:`DEFAULT_GPU_BASE_IMAGE` / :data:`DEFAULT_BASE_IMAGE`
    (:func:`dripml.settings.base_image`)."""
    return settings.base_image(gpu, base_image, environ=environ)


def containers_dir(repo_root: Path | None = None) -> Path:
    """``containers/`` of the checkout (beside ``platform/``)."""
    root = repo_root if repo_root is not None else Path(__file__).resolve().parents[3]
    folder = root / "containers"
    if not (folder / "serving" / "Containerfile").is_file():
        raise ImageError(f"the serving Containerfile is not at {folder / 'serving'}: drip build "
                         f"needs a source checkout of dripml (containers/ and platform/), "
                         f"installed with `pip install -e .`")
    return folder


def make_plan(*, name: str, version: str, registry: str | Registry,
              model_requirements: Sequence[str], gpu: bool = False,
              base_image: str | None = None, build_image: str | None = None,
              builder: str = "buildah", algorithm: str = "",
              repo_root: Path | None = None) -> BuildPlan:
    """The build plan of model version ``name``/``version`` (no I/O besides finding the
    Containerfile).

    Args:
        registry: ``HOST[:PORT]/REPO`` or a :class:`Registry`.
        model_requirements: the model's logged pip requirements (``mlflow`` is dropped: the
            image loads the exported bundle, not the MLflow model).
        gpu: build on a CUDA base with ``Containerfile.gpu``.
        base_image, build_image: see :class:`BuildPlan` and :func:`base_image_for`.
        builder: one of :data:`BUILDERS`.

    Raises:
        ImageError: an unknown builder or a bad registry string.
    """
    check_builder(builder)
    target = registry if isinstance(registry, Registry) else parse_registry(registry)
    base = base_image_for(gpu, base_image)
    folder = containers_dir(repo_root) / "serving"
    requirements = runtime_requirements(model_requirements, gpu=gpu)
    names = {re.split(r"[=<>!~\[; ]", line, maxsplit=1)[0].lower() for line in requirements}
    # Declared per pip requirement (dripml.algorithms.registry.system_packages), so any model
    # that installs LightGBM gets its OpenMP runtime, custom code included.
    from dripml.algorithms import registry as algorithms

    system = sorted({apt for package, needs in algorithms.system_packages().items()
                     if package in names for apt in needs})
    return BuildPlan(name=name, version=str(version), registry=target,
                     tag=image_tag(name, str(version), gpu=gpu), gpu=gpu, base_image=base,
                     build_image=build_image or base, builder=builder,
                     containerfile=folder / ("Containerfile.gpu" if gpu else "Containerfile"),
                     requirements=tuple(requirements), system_packages=tuple(system),
                     algorithm=algorithm)


def plan_build(model: str, *, registry: str, gpu: bool = False, base_image: str | None = None,
               build_image: str | None = None, builder: str = "buildah",
               tracking_uri: str | None = None, repo_root: Path | None = None) -> BuildPlan:
    """Pin ``model`` (``NAME[@alias]``, ``NAME/version``, ``models:/...``) in the Model
    Registry and plan its image (see :func:`make_plan`). The registry string and the
    builder are checked before MLflow is touched.

    Raises:
        ImageError: a bad registry string or builder.
        ModelRefError: ``model`` is not a registered model reference (a ``runs:/`` URI is
            not: the image is recorded on a model version).
        ModelNotFoundError: no such model, version or alias (lists what exists).
    """
    target = parse_registry(registry)
    check_builder(builder)
    ref = ModelRef.parse(model)
    import mlflow
    from mlflow.tracking import MlflowClient

    from dripml.productionize import tracking

    tracking.configure(tracking_uri)
    name, version = tracking.resolve_version(ref.uri)
    details = MlflowClient().get_model_version(name, version)
    requirements_file = mlflow.pyfunc.get_model_dependencies(ref.at_version(version).uri)
    lines = Path(requirements_file).read_text().splitlines()
    return make_plan(name=name, version=version, registry=target, model_requirements=lines,
                     gpu=gpu, base_image=base_image, build_image=build_image, builder=builder,
                     algorithm=details.tags.get("algorithm", ""), repo_root=repo_root)


def runtime_requirements(model_requirements: Iterable[str], *, gpu: bool = False,
                         serving: Sequence[str] = SERVING_PACKAGES) -> list[str]:
    """Pinned pip requirement lines for the image: the model's requirements (without
    ``mlflow``) and :data:`SERVING_PACKAGES`, each with its whole dependency closure pinned
    to the version installed in this environment (the one the model bundle is pickled by).

    A requirement not installed here keeps its logged line. A ``+cpu`` torch stays pinned
    for a CPU image (with the PyTorch CPU index as an extra index) and loses the label for a
    GPU image (PyPI's CUDA build).
    """
    from packaging.markers import default_environment
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    lines: list[str] = []
    roots: list[tuple[str, frozenset[str]]] = []
    for raw in [*model_requirements, *serving]:
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            lines.append(line)
            continue
        if canonicalize_name(requirement.name) == "mlflow":
            continue
        roots.append((requirement.name, frozenset(requirement.extras)))
        if not _installed(requirement.name):
            lines.append(line)

    pinned: dict[str, str] = {}
    queue = list(roots)
    seen: set[tuple[str, frozenset[str]]] = set()
    environment = default_environment()
    while queue:
        package, extras = queue.pop()
        key = (canonicalize_name(package), extras)
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            continue
        pinned[canonicalize_name(package)] = distribution.version
        for text in distribution.requires or []:
            dependency = Requirement(text)
            marker = dependency.marker
            if marker is None or any(marker.evaluate({**environment, "extra": extra})
                                     for extra in (extras or {""})):
                queue.append((dependency.name, frozenset(dependency.extras)))

    extra_index = False
    for package, version in sorted(pinned.items()):
        if package == "dripml":
            continue  # installed from its own wheel, without dependencies
        public, _, local = version.partition("+")
        if local and not (package == "torch" and local == "cpu" and not gpu):
            version = public
        extra_index |= package == "torch" and version.endswith("+cpu")
        lines.append(f"{package}=={version}")
    if extra_index:
        lines.insert(0, f"--extra-index-url {PYTORCH_CPU_INDEX}")
    return lines


def _installed(package: str) -> bool:
    try:
        metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return False
    return True


# --------------------------------------------------------------------------------- context


def prepare_context(plan: BuildPlan, model: Any, folder: Path | None = None, *,
                    repo_root: Path | None = None) -> Path:
    """Write the build context of ``plan`` for ``model`` (a loaded TrainedModel); returns it.

    Layout of ``folder`` (default a new ``dripml-build-<tag>-*`` folder in the temporary
    directory; emptied first; no part of its path may start with a dot, which ``bentoml
    build`` refuses)::

        context/Containerfile        containers/serving/Containerfile[.gpu]
        context/requirements.txt     plan.requirements
        context/wheels/dripml-*.whl  this checkout, `pip wheel --no-deps`
        context/bento/               the BentoML bento (bento.yaml, src/model/ = the bundle)

    Raises:
        ImageError: ``bentoml build`` or ``pip wheel`` failed (their output is in the
            message), or ``folder`` has a hidden part.
    """
    from dripml.productionize import serving

    if folder is None:
        work = Path(tempfile.mkdtemp(prefix=f"dripml-build-{plan.tag}-"))
    else:
        work = folder.resolve()
        if work.exists():
            shutil.rmtree(work)
    if any(part.startswith(".") for part in work.parts):
        raise ImageError(f"the build folder {work} has a hidden part ('.' first), which "
                         f"bentoml build refuses; choose another folder")
    context = work / "context"
    source = work / "bento-source"
    serving.write_bundle(model, source / "model", model_uri=plan.model_uri,
                         version_label=plan.version_label)
    requirements = "\n".join(plan.requirements) + "\n"
    (source / "requirements.txt").write_text(requirements)
    bento = _build_bento(plan, source, work / "bentoml-home")
    shutil.copytree(bento, context / "bento")
    (context / "requirements.txt").write_text(requirements)
    _build_wheel(repo_root, work / "dripml-source", context / "wheels")
    shutil.copy2(plan.containerfile, context / "Containerfile")
    return context


def _build_bento(plan: BuildPlan, source: Path, home: Path) -> Path:
    """``bentoml build`` of the bundle in ``source``, in a BentoML home of its own; the bento
    folder. Runs in a child process: importing the service loads the model."""
    config = {
        "service": "dripml.productionize.service:DripmlService",
        "name": re.sub(r"[^a-z0-9_.-]+", "-", plan.name.lower()).strip("-.") or "model",
        "labels": {"dripml.model_uri": plan.model_uri},
        "include": ["model/**"],
        "python": {"requirements_txt": "requirements.txt", "lock_packages": False},
    }
    import yaml

    (source / "bentofile.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**_clean_environ(), "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True",
           "DRIPML_MODEL_PATH": str(source / "model")}
    version = f"v{plan.version}"
    completed = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", ".", "--version", version, "--output",
         "tag"], cwd=source, capture_output=True, text=True, env=env, check=False)
    if completed.returncode != 0:
        output = _tail(completed.stderr or completed.stdout)
        raise ImageError(f"bentoml build of {plan.model_uri} failed (exit "
                         f"{completed.returncode}):\n{output}")
    bento = home / "bentos" / config["name"] / version
    if not (bento / "bento.yaml").is_file():
        raise ImageError(f"bentoml build did not write {bento / 'bento.yaml'}:\n"
                         f"{_tail(completed.stdout)}")
    return bento


def _build_wheel(repo_root: Path | None, scratch: Path, wheels: Path) -> Path:
    """A wheel of dripml from the checkout (copied first: the build writes no files there)."""
    root = repo_root if repo_root is not None else Path(__file__).resolve().parents[3]
    scratch.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, scratch / name)
    shutil.copytree(root / "platform" / "dripml", scratch / "platform" / "dripml",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels.mkdir(parents=True)
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(wheels), str(scratch)],
        capture_output=True, text=True, env=_clean_environ(), check=False)
    built = sorted(wheels.glob("dripml-*.whl"))
    if completed.returncode != 0 or len(built) != 1:
        raise ImageError(f"pip wheel of dripml failed (exit {completed.returncode}); install "
                         f"setuptools and wheel in this environment:\n"
                         f"{_tail(completed.stderr or completed.stdout)}")
    return built[0]


# --------------------------------------------------------------------------------- building


def builder_binary(builder: str) -> str:
    """The builder's executable.

    Raises:
        ImageError: not on PATH; the message says what to install or pass instead.
    """
    found = shutil.which(builder)
    if found is None:
        hint = ("install buildah (Debian/Ubuntu: apt-get install buildah; Fedora: dnf install "
                "buildah), or pass --builder docker" if builder == "buildah" else
                "install Docker (https://docs.docker.com/engine/install/) and start its "
                "daemon, or pass --builder buildah")
        raise ImageError(f"{builder} is not on PATH: {hint}")
    return found


def build_command(plan: BuildPlan, context: Path, binary: str | None = None) -> list[str]:
    """The exact build command for ``plan`` in ``context``."""
    exe = binary or plan.builder
    # RUN steps use the host's network: buildah's chroot isolation always does, and a Docker
    # engine without a bridge network (rootless, CI) has no other.
    argv = [exe, "bud", "--isolation", "chroot", "--layers"] if plan.builder == "buildah" else [
        exe, "build", "--network", "host"]
    for key, value in plan.build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    argv += ["-f", str(context / "Containerfile"), "-t", plan.reference, str(context)]
    return argv


def push_command(plan: BuildPlan, digest_file: Path, binary: str | None = None) -> list[str]:
    """The exact push command; buildah writes the manifest digest to ``digest_file``."""
    exe = binary or plan.builder
    if plan.builder == "docker":
        return [exe, "push", plan.reference]
    argv = [exe, "push", "--digestfile", str(digest_file)]
    if plan.registry.insecure:
        argv.append("--tls-verify=false")
    return [*argv, plan.reference, f"docker://{plan.reference}"]


def build_and_push(plan: BuildPlan, context: Path, *,
                log: Path | None = None) -> tuple[Image, float, float, float]:
    """Build and push the image of ``context``: (image by digest, size MB, build s, push s).

    Raises:
        ImageError: the builder is missing or fails (the message has its output's tail and
            the log file).
    """
    binary = builder_binary(plan.builder)
    log_path = log or context.parent / "build.log"
    # The builder gets the whole environment (REGISTRY_AUTH_FILE, DOCKER_CONFIG for the push):
    # RUN steps see build arguments only, never this environment.
    env = dict(os.environ)
    if plan.builder == "buildah":
        env.setdefault("BUILDAH_ISOLATION", "chroot")
    started = time.perf_counter()
    _run(build_command(plan, context, binary), log_path, env, f"building {plan.reference}")
    build_s = time.perf_counter() - started
    size_mb = image_size_mb(plan, binary)
    digest_file = context.parent / "digest"
    digest_file.unlink(missing_ok=True)
    started = time.perf_counter()
    output = _run(push_command(plan, digest_file, binary), log_path, env,
                  f"pushing {plan.reference}")
    push_s = time.perf_counter() - started
    text = digest_file.read_text() if digest_file.is_file() else output
    image = parse_image(f"{plan.registry.name}@{parse_digest(text)}")
    return image, size_mb, build_s, push_s


def image_size_mb(plan: BuildPlan, binary: str | None = None) -> float:
    """Uncompressed size of the built image ``plan.reference``, MB (10^6 bytes)."""
    import json

    exe = binary or plan.builder
    if plan.builder == "docker":
        text = subprocess.run([exe, "image", "inspect", "--format", "{{.Size}}", plan.reference],
                              capture_output=True, text=True, check=True).stdout
        return int(text.strip()) / 1e6
    text = subprocess.run([exe, "inspect", "--type", "image", plan.reference],
                          capture_output=True, text=True, check=True).stdout
    manifest = json.loads(json.loads(text)["Manifest"])
    return sum(int(layer["size"]) for layer in manifest["layers"]) / 1e6


def record(plan: BuildPlan, image: Image, size_mb: float) -> dict[str, str]:
    """Tag the model version with the image (MLflow must be configured); returns the tags."""
    from mlflow.tracking import MlflowClient

    tags = {IMAGE_TAG: image.reference, SIZE_TAG: f"{size_mb:.1f}", BASE_TAG: plan.base_image}
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(plan.name, plan.version, key, value)
    return tags


def build(model: str, *, registry: str, gpu: bool = False, base_image: str | None = None,
          build_image: str | None = None, builder: str = "buildah",
          tracking_uri: str | None = None, folder: Path | None = None,
          repo_root: Path | None = None) -> BuildResult:
    """Build, push and record the serving image of ``model`` (the whole of ``drip build``).

    Args:
        model: ``NAME`` (alias ``champion``), ``NAME@alias``, ``NAME/version`` or
            ``models:/...``; an alias is pinned to its version first.
        registry: ``HOST[:PORT]/REPO``; the image is pushed as ``REPO:NAME-VERSION``.
        gpu: a CUDA image; base_image, build_image, builder: see :func:`make_plan`.
        tracking_uri: the MLflow store (default ``MLFLOW_TRACKING_URI``, else ``./.dripml``).
        folder: the work folder, kept (default: a new folder in the temporary directory,
            removed after a successful push, kept and named in the error otherwise).

    Returns:
        A :class:`BuildResult`; the model version carries ``dripml.image`` = the image by
        digest, which ``drip deploy`` uses.

    Raises:
        ImageError: bad registry or builder, builder missing or failing, push failing.
        ModelRefError: ``model`` is not a registered model reference.
        ModelNotFoundError: no such model, version or alias.
    """
    from dripml.productionize import tracking

    plan = plan_build(model, registry=registry, gpu=gpu, base_image=base_image,
                      build_image=build_image, builder=builder, tracking_uri=tracking_uri,
                      repo_root=repo_root)
    builder_binary(plan.builder)  # before minutes of work
    work = folder if folder is not None else Path(
        tempfile.mkdtemp(prefix=f"dripml-build-{plan.tag}-"))
    started = time.perf_counter()
    try:
        trained = tracking.load_trained_model(plan.model_uri)
        context = prepare_context(plan, trained, work, repo_root=repo_root)
        prepare_s = time.perf_counter() - started
        image, size_mb, build_s, push_s = build_and_push(plan, context)
    except DripmlError as error:
        # The same kind of error (a caller may catch ModelNotFoundError), naming the folder.
        raise type(error)(f"{error}\n(the build files are kept in {work})") from None
    tags = record(plan, image, size_mb)
    kept: Path | None = context
    if folder is None:
        shutil.rmtree(work, ignore_errors=True)
        kept = None
    return BuildResult(plan=plan, image=image, size_mb=size_mb, build_s=prepare_s + build_s,
                       push_s=push_s, context=kept, recorded=tags)


# --------------------------------------------------------------------------------- helpers


def _run(argv: list[str], log: Path, env: dict[str, str], what: str) -> str:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        completed = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, env=env, check=False)
        out.write(completed.stdout)
    if completed.returncode != 0:
        raise ImageError(f"{what} failed ({argv[0]} exit {completed.returncode}); full log in "
                         f"{log}:\n{_tail(completed.stdout)}")
    return completed.stdout


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


_SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|API_KEY|AUTH)",
                          re.IGNORECASE)


def _clean_environ() -> dict[str, str]:
    """This environment without credential-like variables, for the child processes that write
    the build context (bentoml build, pip wheel): nothing they write can carry a secret."""
    return {k: v for k, v in os.environ.items() if not _SECRET_NAME.search(k)}
