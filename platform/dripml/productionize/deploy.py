"""Deploy: a registered model as an HTTP endpoint on Kubernetes, through the Helm chart
``charts/dripml-endpoint``, or on this machine (``--target local``).

``drip deploy adult@champion --target kubernetes --image REPO@sha256:DIGEST`` comes down to::

    helm upgrade --install adult charts/dripml-endpoint --namespace dripml --create-namespace \\
        -f .dripml/deploy/dripml/adult.values.yaml --wait --timeout 10m

- :func:`plan` builds the chart values (image by digest, model URI, tracking URI, GPU) and that
  exact command. It changes nothing; the MLflow Model Registry is read only when no image is
  given (the model version's ``dripml.image`` tag names it).
- :func:`render` shows a plan as a shell script that does what :func:`apply` does (what
  ``--dry-run`` prints).
- :func:`apply` writes the values file and runs helm, which needs a cluster in the current
  kubectl context.

The chart is found beside the package (``charts/`` next to ``platform/`` in a source checkout).

``drip deploy adult@champion --target local --port 3000`` runs the version's serving image
(``drip build`` recorded it) with podman or docker on the host network, listening on
127.0.0.1 only, with a read-only root filesystem as the chart runs it::

    podman run --rm --name dripml-adult-3000 --network host --read-only --tmpfs /tmp \\
        -e BENTOML_HOST=127.0.0.1 -e BENTOML_PORT=3000 REPO@sha256:DIGEST

:func:`plan_local` decides that command (or, for a version without an image, ``bentoml serve``
through :func:`dripml.productionize.serving.serve`); :func:`run_local` runs it and waits for
``/readyz``.
"""

from __future__ import annotations

import re
import resource
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from dripml import settings
from dripml.core import refs
from dripml.errors import DeployError, ModelRefError, TrackingError

if TYPE_CHECKING:
    from dripml.productionize.serving import ServerHandle

TARGETS = ("local", "kubernetes")
"""Where ``drip deploy`` can deploy to: this machine (:func:`plan_local`) or a cluster
(:func:`plan`)."""

RUNTIMES = ("podman", "docker")
"""Container runtimes for ``--target local``."""

CHART_NAME = "dripml-endpoint"
IMAGE_TAG = "dripml.image"
"""Model version tag holding the serving image reference (``REPO@sha256:<64 hex>``)."""

DEFAULT_NAMESPACE = "dripml"
DEFAULT_ALIAS = refs.DEFAULT_ALIAS
HELM_TIMEOUT = "10m"
"""How long ``helm --wait`` waits for the endpoint to become ready."""

DEPLOY_DIR = Path(settings.STATE_DIR) / "deploy"
"""Where :func:`apply` writes the values files, relative to the working directory."""

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATIONS = ({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},)

MAX_RELEASE_LENGTH = 53
"""Helm's limit on release names."""

# The same rules as the chart's values.schema.json: a repository without tag, then a digest.
_REPOSITORY = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]{1,5})?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
# Object names derive from the release, and a Service name must be a DNS-1035 label.
_RELEASE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SET = re.compile(r"^[^=\s]+=.*$", re.DOTALL)
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


@dataclass(frozen=True)
class Image:
    """A container image pinned by digest."""

    repository: str
    digest: str

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class DeployPlan:
    """Everything one deployment does, decided before anything is touched.

    Attributes:
        release, namespace: the Helm release and the namespace it goes to.
        chart: the ``dripml-endpoint`` chart folder.
        values: the chart values (image, model URI, tracking URI, GPU).
        values_file: where :func:`apply` writes ``values``, relative to the working directory.
        sets: extra ``KEY=VALUE`` chart values, passed to helm as ``--set`` after the file.
        create_namespace: helm creates ``namespace`` if missing (``--create-namespace``);
            False where the caller may not create namespaces (a namespaced Role).
    """

    release: str
    namespace: str
    chart: Path
    values: dict[str, Any]
    values_file: Path
    sets: tuple[str, ...] = ()
    create_namespace: bool = True

    @property
    def command(self) -> tuple[str, ...]:
        """The exact helm command :func:`apply` runs."""
        argv = ["helm", "upgrade", "--install", self.release, _shown(self.chart),
                "--namespace", self.namespace,
                *(["--create-namespace"] if self.create_namespace else []),
                "-f", str(self.values_file)]
        for assignment in self.sets:
            argv += ["--set", assignment]
        argv += ["--wait", "--timeout", HELM_TIMEOUT]
        return tuple(argv)

    @property
    def shell_command(self) -> str:
        """:attr:`command` quoted for a shell."""
        return shlex.join(self.command)

    @property
    def values_yaml(self) -> str:
        return yaml.safe_dump(self.values, sort_keys=False)


def plan(model: str, *, target: str, image: str | None = None, gpu: bool = False,
         gpu_count: int = 1, namespace: str = DEFAULT_NAMESPACE, release: str | None = None,
         tracking_uri: str | None = None, cluster_tracking_uri: str | None = None,
         sets: Sequence[str] = (), repo_root: Path | None = None,
         create_namespace: bool = True) -> DeployPlan:
    """Plan the deployment of ``model`` (``NAME[@alias]``, ``NAME/version`` or a URI).

    Args:
        target: where to deploy; one of :data:`TARGETS`.
        image: the serving image ``REPO@sha256:<64 hex>``; default: the model version's
            ``dripml.image`` tag in the registry at ``tracking_uri``.
        gpu, gpu_count: serve on ``gpu_count`` NVIDIA GPUs per replica.
        namespace, release: where the endpoint goes; the release defaults to the model name
            as a DNS-1035 label.
        tracking_uri: the MLflow server (default ``MLFLOW_TRACKING_URI``).
        cluster_tracking_uri: the same server as the endpoint's pods reach it (default
            ``tracking_uri``); must be http(s) and not a loopback address.
        sets: extra chart values as ``KEY=VALUE`` (helm ``--set`` syntax).
        repo_root: the checkout holding ``charts/`` (default: found from this package).
        create_namespace: let helm create ``namespace`` when missing (default); False for
            a caller allowed only inside an existing namespace (the UI's namespaced Role).

    Raises:
        DeployError: a bad argument, a missing chart or a missing image; the message says
            what to pass instead.
        ModelRefError: ``model`` is none of the accepted forms.
        TrackingError, ModelNotFoundError: no image given, and the registry cannot say it.
    """
    if target not in TARGETS:
        raise DeployError(f"unknown deploy target {target!r}; valid targets: {list(TARGETS)}")
    if target != "kubernetes":
        raise DeployError(f"plan() plans a Kubernetes deployment; plan --target {target} with "
                          f"plan_local()")
    chart = chart_dir(repo_root)
    if not 1 <= gpu_count <= 16:
        raise DeployError(f"gpu_count must be between 1 and 16 (got {gpu_count})")
    uri = model_uri(model)
    release = release if release is not None else release_name(_registered_name(uri, model))
    _check_name("release", release, _RELEASE, MAX_RELEASE_LENGTH,
                "lowercase letters, digits and '-', starting with a letter")
    _check_name("namespace", namespace, _NAMESPACE, 63, "lowercase letters, digits and '-'")
    for assignment in sets:
        if not _SET.match(assignment):
            raise DeployError(f"--set takes KEY=VALUE (helm syntax), got {assignment!r}")
    # No embedded default: the pods need a server (endpoint_tracking_uri says so).
    tracking_uri = settings.tracking_uri(tracking_uri)
    endpoint_uri = endpoint_tracking_uri(cluster_tracking_uri or tracking_uri)
    pinned = parse_image(image) if image else registry_image(uri, tracking_uri)
    values = endpoint_values(image=pinned, model_uri=uri, tracking_uri=endpoint_uri,
                             gpu_count=gpu_count if gpu else 0)
    return DeployPlan(release=release, namespace=namespace, chart=chart,
                      values=values, values_file=DEPLOY_DIR / namespace / f"{release}.values.yaml",
                      sets=tuple(sets), create_namespace=create_namespace)


def endpoint_values(*, image: Image, model_uri: str, tracking_uri: str,
                    gpu_count: int = 0) -> dict[str, Any]:
    """The ``dripml-endpoint`` chart values for one model (``gpu_count`` 0: CPU only)."""
    values: dict[str, Any] = {
        "image": {"repository": image.repository, "digest": image.digest},
        "model": {"uri": model_uri},
        "mlflow": {"trackingUri": tracking_uri},
    }
    if gpu_count:
        values["gpu"] = {"enabled": True, "count": gpu_count, "resourceName": GPU_RESOURCE,
                         "tolerations": [dict(t) for t in GPU_TOLERATIONS]}
    return values


def render(deploy_plan: DeployPlan) -> str:
    """A shell script doing what :func:`apply` does: write the values file, run helm."""
    folder = shlex.quote(str(deploy_plan.values_file.parent))
    target = shlex.quote(str(deploy_plan.values_file))
    return (f"# drip deploy: release {deploy_plan.release} in namespace {deploy_plan.namespace}"
            f" (dry run: nothing was written or run)\n"
            f"mkdir -p {folder}\n"
            f"cat > {target} <<'EOF'\n{deploy_plan.values_yaml}EOF\n"
            f"{deploy_plan.shell_command}\n")


def apply(deploy_plan: DeployPlan) -> Path:
    """Write the values file and run ``helm upgrade --install``; returns the values file.

    Raises:
        DeployError: helm is not installed or exits with an error.
    """
    helm = shutil.which("helm")
    if helm is None:
        raise DeployError("helm is not on PATH: install Helm 3.8 or later "
                          "(https://helm.sh/docs/intro/install/), or pass --dry-run to print "
                          "the command")
    deploy_plan.values_file.parent.mkdir(parents=True, exist_ok=True)
    deploy_plan.values_file.write_text(deploy_plan.values_yaml)
    completed = subprocess.run([helm, *deploy_plan.command[1:]], check=False)
    if completed.returncode != 0:
        raise DeployError(f"helm exited with status {completed.returncode} (its output is "
                          f"above); the values are in {deploy_plan.values_file}; retry with: "
                          f"{deploy_plan.shell_command}")
    return deploy_plan.values_file


def model_uri(model: str, default_alias: str = DEFAULT_ALIAS) -> str:
    """``NAME``, ``NAME@alias``, ``NAME/version``, a ``models:/`` URI or ``runs:/RUN_ID/PATH``
    -> a ``models:/`` or ``runs:/`` URI (:func:`dripml.core.refs.model_uri`, no MLflow).

    Raises:
        ModelRefError: none of those forms; the message starts ``cannot deploy``.
    """
    try:
        return refs.model_uri(model, default_alias)
    except ModelRefError as error:
        raise ModelRefError(f"cannot deploy: {error}") from None


def release_name(model_name: str) -> str:
    """A Helm release name for ``model_name``: lowercase, '-' for other characters, starting
    with a letter, at most 53 characters ("Churn_Model v2" -> "churn-model-v2")."""
    name = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
    if name and not name[0].isalpha():
        name = f"model-{name}"
    name = name[:MAX_RELEASE_LENGTH].rstrip("-")
    if not name:
        raise DeployError(f"cannot derive a release name from {model_name!r}; pass --release")
    return name


def parse_image(reference: str) -> Image:
    """``REPO@sha256:<64 hex>`` -> :class:`Image`; tags are refused (a digest never moves)."""
    repository, _, digest = reference.strip().partition("@")
    if not _DIGEST.match(digest) or not _REPOSITORY.match(repository):
        raise DeployError(f"the image must be referenced by digest, REPO@sha256:<64 hex> "
                          f"(e.g. registry.example.com/ml/adult@sha256:4f1c...), got "
                          f"{reference!r}; `docker buildx imagetools inspect IMAGE:TAG` "
                          f"prints the digest of a pushed tag")
    return Image(repository=repository, digest=digest)


def registry_image(uri: str, tracking_uri: str | None) -> Image:
    """The serving image of a model version: its ``dripml.image`` tag in the registry."""
    if not uri.startswith(refs.SCHEME):
        raise DeployError(f"{uri} is not a registered model, so it has no {IMAGE_TAG!r} tag; "
                          f"pass --image REPO@sha256:<64 hex>")
    name, version, reference = _image_tag(uri, tracking_uri)
    if not reference:
        raise DeployError(f"model version {name}/{version} ({uri}) has no {IMAGE_TAG!r} tag, so "
                          f"dripml does not know its serving image: build and push the image "
                          f"for this version with `drip build "
                          f"{shlex.quote(f'{name}/{version}')} --registry HOST/REPO` (that "
                          f"records the tag), or pass --image "
                          f"REPO@sha256:<64 hex>")
    return parse_image(reference)


def _image_tag(uri: str, tracking_uri: str | None) -> tuple[str, str, str | None]:
    """(name, version, the version's ``dripml.image`` tag or None) of a ``models:/`` URI."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from dripml.productionize import tracking

    resolved = settings.resolve_tracking_uri(tracking_uri)
    store = resolved.removeprefix("sqlite:///")
    if resolved.startswith("sqlite:///") and not Path(store).exists():
        raise TrackingError(f"no MLflow store at {store} to read the image of {uri} from; "
                            f"pass --tracking-uri (or MLFLOW_TRACKING_URI), or --image "
                            f"REPO@sha256:...")
    tracking.configure(resolved)
    try:
        name, version = tracking.resolve_version(uri)
        reference = MlflowClient().get_model_version(name, version).tags.get(IMAGE_TAG)
    except MlflowException as error:
        reason = str(error).splitlines()[0][:300]
        raise TrackingError(f"cannot read the serving image of {uri} from MLflow at "
                            f"{resolved} ({reason}); check --tracking-uri, or pass --image "
                            f"REPO@sha256:<64 hex>") from None
    return name, version, reference or None


def endpoint_tracking_uri(uri: str | None) -> str:
    """Check the tracking URI the endpoint's pods use: an http(s) server they can reach."""
    if not uri:
        raise DeployError("the endpoint loads its model from an MLflow server: pass "
                          "--tracking-uri (or set MLFLOW_TRACKING_URI), e.g. "
                          "http://dripml-mlflow.dripml.svc.cluster.local:5000 from the dripml "
                          "chart")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeployError(f"the endpoint's pods need an http(s) MLflow server, got {uri!r}; "
                          f"install charts/dripml and pass its address as "
                          f"--cluster-tracking-uri")
    if parts.hostname in _LOOPBACK:
        raise DeployError(f"{uri} is this machine, which the endpoint's pods cannot reach; pass "
                          f"the server's in-cluster address as --cluster-tracking-uri, e.g. "
                          f"http://dripml-mlflow.dripml.svc.cluster.local:5000")
    return uri


def chart_dir(repo_root: Path | None = None) -> Path:
    """The ``dripml-endpoint`` chart: ``charts/`` beside ``platform/`` in the checkout."""
    root = repo_root if repo_root is not None else Path(__file__).resolve().parents[3]
    chart = root / "charts" / CHART_NAME
    if not (chart / "Chart.yaml").is_file():
        raise DeployError(f"the {CHART_NAME} Helm chart is not at {chart}: drip deploy needs a "
                          f"source checkout of dripml (charts/ beside platform/), installed with "
                          f"`pip install -e .`")
    return chart


def _registered_name(uri: str, model: str) -> str:
    if not uri.startswith(refs.SCHEME):
        raise DeployError(f"{model!r} has no registered model name to name the release after; "
                          f"pass --release")
    return refs.ModelRef.parse(uri).name


def _check_name(what: str, value: str, pattern: re.Pattern[str], limit: int, rule: str) -> None:
    if len(value) > limit or not pattern.match(value):
        raise DeployError(f"invalid {what} {value!r}: at most {limit} characters, {rule}")


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


# --------------------------------------------------------------------------------- local

LOCAL_HOST = "127.0.0.1"
"""``--target local`` listens on loopback only."""

CONTAINER_ULIMITS = {"nofile": 20000, "nproc": 32768}
"""Container ulimits for ``--target local`` (capped at this process's hard limits): a runtime
that raises them past the host's limits fails without CAP_SYS_RESOURCE."""


@dataclass(frozen=True)
class LocalPlan:
    """``--target local``: run the serving image, or ``bentoml serve`` when there is none.

    Attributes:
        model_uri: the model (``models:/NAME@alias``, ``models:/NAME/VERSION``, ...).
        image: the serving image by digest; None serves the model with ``bentoml serve``
            from the MLflow store (the version has no ``dripml.image`` tag).
        runtime: ``podman`` or ``docker``.
        port: the port on 127.0.0.1.
        name: the container name.
    """

    model_uri: str
    image: Image | None
    runtime: str
    port: int
    name: str

    @property
    def command(self) -> tuple[str, ...]:
        """The exact ``podman run`` / ``docker run`` command (empty without an image)."""
        if self.image is None:
            return ()
        argv = [self.runtime, "run", "--rm", "--name", self.name, "--network", "host",
                "--read-only", "--tmpfs", "/tmp",
                "--label", f"io.dripml.model-uri={self.model_uri}"]
        for limit, value in container_ulimits().items():
            argv += ["--ulimit", f"{limit}={value}:{value}"]
        argv += ["-e", f"BENTOML_HOST={LOCAL_HOST}", "-e", f"BENTOML_PORT={self.port}"]
        if self.runtime == "podman" and loopback_registry(self.image.repository):
            argv.append("--tls-verify=false")  # a registry on 127.0.0.1 speaks plain HTTP
        return (*argv, self.image.reference)

    @property
    def shell_command(self) -> str:
        return shlex.join(self.command) if self.command else (
            f"drip serve {shlex.quote(self.model_uri)} --port {self.port}")


def plan_local(model: str, *, image: str | None = None, port: int = 3000,
               runtime: str = "podman", tracking_uri: str | None = None) -> LocalPlan:
    """Plan ``drip deploy MODEL --target local``: the image is ``image``, else the version's
    ``dripml.image`` tag, else None (serve from the MLflow store with ``bentoml serve``).

    Raises:
        DeployError: a bad runtime, port or image reference.
        ModelRefError: ``model`` is none of the accepted forms.
        TrackingError: the MLflow store is missing or unreadable.
        ModelNotFoundError: no such model, version or alias.
    """
    if runtime not in RUNTIMES:
        raise DeployError(f"unknown container runtime {runtime!r}; valid runtimes: "
                          f"{list(RUNTIMES)}")
    if not 1 <= port <= 65535:
        raise DeployError(f"port must be between 1 and 65535 (got {port})")
    uri = model_uri(model)
    pinned: Image | None
    if image:
        pinned = parse_image(image)
    elif uri.startswith(refs.SCHEME):
        _, _, reference = _image_tag(uri, tracking_uri)
        pinned = parse_image(reference) if reference else None
    else:
        pinned = None
    label = release_name(_registered_name(uri, model)) if uri.startswith(refs.SCHEME) else "model"
    return LocalPlan(model_uri=uri, image=pinned, runtime=runtime, port=port,
                     name=f"dripml-{label}-{port}")


def run_local(local: LocalPlan, *, tracking_uri: str | None = None, timeout_s: float = 180,
              log_path: Path | None = None) -> ServerHandle:
    """Start ``local`` and return once ``GET /readyz`` answers 200.

    Returns:
        A :class:`dripml.productionize.serving.ServerHandle` (for an image: a
        :class:`dripml.productionize.serving.ContainerHandle`, whose ``stop()`` also stops and
        removes the container).

    Raises:
        DeployError: the runtime is not installed; ServeError: the port is taken, or the
            server exited or was not ready in ``timeout_s`` (with its log's last lines).
    """
    from dripml.productionize import serving

    if local.image is None:
        return serving.serve(local.model_uri, host=LOCAL_HOST, port=local.port,
                             tracking_uri=tracking_uri, timeout_s=timeout_s)
    binary = shutil.which(local.runtime)
    if binary is None:
        other = "docker" if local.runtime == "podman" else "podman"
        raise DeployError(f"{local.runtime} is not on PATH: install it (Debian/Ubuntu: apt-get "
                          f"install {local.runtime if local.runtime == 'podman' else 'docker.io'}"
                          f"), or pass --runtime {other}")
    serving.check_port_free(LOCAL_HOST, local.port)
    log = log_path or DEPLOY_DIR / "local" / f"{local.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([binary, "rm", "--force", local.name], capture_output=True, check=False)
    with log.open("wb") as out:
        process = subprocess.Popen([binary, *local.command[1:]], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    handle = serving.ContainerHandle(
        url=f"http://{LOCAL_HOST}:{local.port}", model_uri=local.model_uri,
        version_label=local.image.reference, log_path=log.resolve(), process=process,
        runtime=binary, container=local.name)
    return serving.until_ready(handle, timeout_s)


def container_ulimits() -> dict[str, int]:
    """:data:`CONTAINER_ULIMITS` capped at this process's hard limits."""
    limits = {"nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC}
    capped = {}
    for name, wanted in CONTAINER_ULIMITS.items():
        _, hard = resource.getrlimit(limits[name])
        capped[name] = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    return capped


def loopback_registry(repository: str) -> bool:
    """Whether ``HOST[:PORT]/REPO`` names a registry on loopback, spoken to over plain HTTP."""
    host = repository.split("/", 1)[0]
    return host.startswith(("localhost", "127.", "[::1]"))
