"""What deploy/ installs, rendered the way a user renders it (`kubectl kustomize`), for the tests, the
sandbox and the benchmarks: so that the RBAC the operator runs with on the real control plane is
exactly the RBAC every install renders, never a copy of it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OPERATOR_NAMESPACE = "toolcatalog-system"
OPERATOR_SERVICE_ACCOUNT = "toolcatalog"
RBAC_KINDS = frozenset({"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"})


def render(kubectl: str, directory: Path = DEPLOY) -> list[dict[str, Any]]:
    """`kubectl kustomize DIRECTORY`, as objects."""
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def operator_access(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The namespace(s), ServiceAccount and RBAC among rendered objects: what the operator runs with."""
    return [obj for obj in objects if obj.get("kind") in RBAC_KINDS or obj.get("kind") == "Namespace"]


def install_operator_access(plane: Any, directory: Path = DEPLOY) -> str:
    """Apply the namespace and RBAC `directory` renders to a control plane (as admin); a TokenRequest token
    of the operator's ServiceAccount, as a pod of the Deployment would get one."""
    objects = operator_access(render(plane.binary("kubectl"), directory))
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects, sort_keys=False))
    return str(plane.service_account_token(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT))
