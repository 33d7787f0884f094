"""What a cluster does with what thv-operator renders, done here where no pod runs: read the RunConfig it
rendered for a workload, write the Secrets the proxy's pod would mount, and fill in the sample
MCPWebhookConfig (deploy/samples/toolhive/) the way a platform team does; for the gateway tests and the
benchmarks.

thv-operator renders an MCPServer (with the MCPToolConfig and MCPWebhookConfig it names) into the ConfigMap
`<workload>-runconfig` (key runconfig.json) and a Deployment whose pod template carries the RunConfig's
checksum (annotation toolhive.stacklok.dev/runconfig-checksum). ToolHive's proxy runner reads runconfig.json
once, at start (cmd/thv-proxyrunner: no file watch); a re-rendered RunConfig changes the checksum, which
rolls the Deployment: the new pod enforces it. Here, ToolHiveRunner.restart() with the new RunConfig is that
rollout.

`kubectl` is any callable running kubectl in the workload's namespace and returning its stdout.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
WEBHOOK_SAMPLE = REPO / "deploy" / "samples" / "toolhive" / "mcpwebhookconfig.yaml"
CHECKSUM_ANNOTATION = "toolhive.stacklok.dev/runconfig-checksum"

Kubectl = Callable[..., str]


def runconfig(kubectl: Kubectl, workload: str) -> dict[str, Any] | None:
    """The RunConfig thv-operator rendered for `workload` (None until it has)."""
    found = kubectl("get", "configmap", f"{workload}-runconfig", "--ignore-not-found", "-o",
                    "jsonpath={.data.runconfig\\.json}")
    return dict(json.loads(found)) if found.strip() else None


def rollout_checksum(kubectl: Kubectl, deployment: str) -> str | None:
    """The RunConfig checksum on the proxy Deployment's pod template: when it changes, the pods are replaced."""
    found = kubectl("get", "deployment", deployment, "--ignore-not-found", "-o",
                    "jsonpath={.spec.template.metadata.annotations.toolhive\\.stacklok\\.dev/runconfig-checksum}")
    return found.strip() or None


def mount_secrets(kubectl: Kubectl, deployment: str, root: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Do what the kubelet would for the proxy's pod: write the Secrets its Deployment mounts under `root`,
    and point the RunConfig's paths there."""
    pod = yaml.safe_load(kubectl("get", "deployment", deployment, "-o", "yaml"))["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    text = json.dumps(config)
    for container in pod["containers"]:
        for mount in container.get("volumeMounts", []):
            secret = volumes[mount["name"]].get("secret")
            if secret is None:
                continue
            data = (yaml.safe_load(kubectl("get", "secret", secret["secretName"], "-o", "yaml")) or {}).get("data", {})
            for item in secret.get("items") or [{"key": key, "path": key} for key in data]:
                if mount.get("subPath") not in (None, item["path"]):
                    continue
                target = root / mount["mountPath"].lstrip("/")
                if not mount.get("subPath"):
                    target = target / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(base64.b64decode(data[item["key"]]))
            text = text.replace(json.dumps(mount["mountPath"])[:-1], json.dumps(str(root) + mount["mountPath"])[:-1])
    return dict(json.loads(text))


def pod_runconfig(kubectl: Kubectl, workload: str, root: Path) -> Path:
    """The RunConfig the proxy's pod would start with, its Secrets mounted under `root`, as a file."""
    config = runconfig(kubectl, workload)
    if config is None:
        raise RuntimeError(f"thv-operator has not rendered {workload}'s RunConfig")
    root.mkdir(parents=True, exist_ok=True)
    path = root / "runconfig.json"
    path.write_text(json.dumps(mount_secrets(kubectl, workload, root, config)))
    return path


def webhook_sample(namespace: str, url: str, ca_pem: str, hmac_secret: str) -> list[dict[str, Any]]:
    """deploy/samples/toolhive/mcpwebhookconfig.yaml filled in for `namespace`: the operator's webhook `url`
    (https://HOST:PORT/toolhive/<namespace>/<allowlist>), the CA of its certificate and the shared HMAC secret."""
    objects = [obj for obj in yaml.safe_load_all(WEBHOOK_SAMPLE.read_text()) if obj]
    for obj in objects:
        obj["metadata"]["namespace"] = namespace
        if obj["kind"] == "MCPWebhookConfig":
            obj["spec"]["validating"][0]["url"] = url
        elif obj["metadata"]["name"] == "toolcatalog-webhook-ca":
            obj["stringData"]["ca.crt"] = ca_pem
        else:
            obj["stringData"]["secret"] = hmac_secret
    return objects
