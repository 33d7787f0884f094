"""Credentials for the Kubernetes API, shared by kopf's watches and our own client.

Inside a pod: the ServiceAccount (kopf's own login). Outside: the kubeconfig, with kopf's own
reader when it suffices (plain tokens, client certificates) and the official `kubernetes` client's
loader only when it is needed (`--context`, exec plugins, auth providers), so that an operator in
a pod never imports that package.
"""

from __future__ import annotations

import os
from typing import Any

import kopf
import yaml

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def _kubeconfig_needs_the_client() -> bool:
    """Whether the current kubeconfig user needs more than kopf's reader: an exec plugin or an auth provider."""
    paths = [os.path.expanduser(p) for p in (os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep) if p]
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                config = yaml.safe_load(handle) or {}
        except OSError:
            continue
        if any("exec" in (user.get("user") or {}) or "auth-provider" in (user.get("user") or {})
               for user in config.get("users") or []):
            return True
    return False


def _via_kubernetes_client(context: str | None) -> kopf.ConnectionInfo:
    import kubernetes  # heavy: only for contexts, exec plugins and auth providers

    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(context=context, client_configuration=configuration)
    token = (configuration.api_key or {}).get("authorization") or (configuration.api_key or {}).get("BearerToken")
    scheme = None
    if token and " " in token:
        scheme, token = token.split(" ", 1)
    return kopf.ConnectionInfo(
        server=configuration.host, ca_path=configuration.ssl_ca_cert, insecure=not configuration.verify_ssl,
        username=configuration.username or None, password=configuration.password or None,
        scheme=scheme, token=token or None, certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file)


def login(context: str | None = None, settings: Any = None) -> kopf.ConnectionInfo:
    """The connection to use: in-cluster ServiceAccount, else the kubeconfig (its current context,
    or `context`). Re-run on every 401, so a rotated token is read again."""
    settings = settings or kopf.OperatorSettings()
    if context is None and os.path.exists(SERVICE_ACCOUNT_TOKEN) and os.environ.get("KUBERNETES_SERVICE_HOST"):
        info = kopf.login_with_service_account(settings=settings)
        if info is not None:
            return info
    if context is None and not _kubeconfig_needs_the_client():
        info = kopf.login_with_kubeconfig(settings=settings)
        if info is not None:
            return info
    return _via_kubernetes_client(context)
