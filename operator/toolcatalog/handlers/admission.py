"""The validating admission webhook (optional): refuses, at `kubectl apply`, the specs a sync would
report as InvalidSpec, with the same words.

The CRD schema and its CEL rules catch most mistakes (a host not written in ASCII among them); this
catches what they cannot express: an unparseable URL, userinfo, an IPv4 literal in a non-standard
form, an address the operator's egress policy denies written as a literal (or read as one under
IDNA mapping), static headers HTTP cannot carry, an invalid glob, a tool listed twice in spec.tools,
an approvedHash that is not a sha256. failurePolicy is Ignore: with the operator down, applies still
work, and a spec that slips past gets InvalidSpec at its sync, never a retry loop.

An update that does not change the spec (a refresh annotation, a label) is always admitted, so an
object stored before the webhook existed can still be refreshed or deleted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import kopf

from ..api import constants as c
from ..api.errors import SyncError
from ..api.spec import parse_spec
from ..config import OperatorConfig
from ..mcp.egress import EgressPolicy

logger = logging.getLogger(__name__)

HANDLER_ID = "validate"         # the webhook's path: /validate
KIND_OF_PLURAL = {c.PLURAL[kind]: kind for kind in c.SOURCE_KINDS}   # a ToolAllowlist: its CRD's rules


def problems_of(kind: str, spec: Mapping[str, Any], egress: EgressPolicy) -> str | None:
    """Why `spec` is refused (one message), or None. Pure but for the policy's networks."""
    try:
        parse_spec(kind, spec, egress_verdict=egress.verdict)
    except SyncError as error:
        return error.message
    return None


class ServiceReference:
    """kopf's webhook server, reached by the API server through a Service (in a cluster) instead of a URL."""

    def __init__(self, server: kopf.WebhookServer, namespace: str, name: str, port: int = 443) -> None:
        self.server, self.namespace, self.name, self.port = server, namespace, name, port

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async for config in self.server(fn):
            by_service = kopf.WebhookClientConfig(service=kopf.WebhookClientConfigService(
                namespace=self.namespace, name=self.name, port=self.port))
            if "caBundle" in config:
                by_service["caBundle"] = config["caBundle"]
            yield by_service


def webhook_server(config: OperatorConfig) -> ServiceReference | kopf.WebhookServer:
    """HTTPS with the certificate in --webhook-cert-dir (tls.crt, tls.key; ca.crt, if there, is the CA
    bundle the API server is given), re-read when the files change (cert-manager renewals)."""
    assert config.webhook_port is not None
    directory = Path(config.webhook_cert_dir)
    cert, key, ca = directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
    missing = [str(path) for path in (cert, key) if not path.is_file()]
    if missing:
        raise kopf.PermanentError(f"--webhook-port needs a certificate: {', '.join(missing)} missing "
                                  "(mount the webhook's TLS Secret at --webhook-cert-dir)")
    server = kopf.WebhookServer(addr=config.webhook_address, port=config.webhook_port,
                                host=config.webhook_host or None, certfile=str(cert), pkeyfile=str(key),
                                cafile=str(ca) if ca.is_file() else None)
    if config.webhook_service:
        namespace, _, name = config.webhook_service.partition("/")
        return ServiceReference(server, namespace, name)
    return server


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    if config.webhook_port is None:
        return
    egress = EgressPolicy.from_lists(config.egress_deny, config.egress_allow)

    @kopf.on.startup(registry=registry)
    def serve_webhook(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.admission.server = webhook_server(config)
        settings.admission.managed = config.webhook_configuration or None
        logger.info("admission webhook on %s:%d%s", config.webhook_address, config.webhook_port,
                    f", managing ValidatingWebhookConfiguration {config.webhook_configuration}"
                    if config.webhook_configuration else "")

    # One handler for both kinds (every resource of our group): one webhook, at /validate.
    @kopf.on.validate(c.GROUP, kopf.EVERYTHING, id=HANDLER_ID, registry=registry, operations=["CREATE", "UPDATE"],
                      ignore_failures=True)
    def validate_spec(spec: kopf.Spec, resource: kopf.Resource, **kwargs: Any) -> None:
        kind = KIND_OF_PLURAL.get(resource.plural)
        if kind is None:
            return
        old = kwargs.get("old")
        if old is not None and dict(old.get("spec") or {}) == dict(spec):
            return          # not a spec change: never refuse a refresh, a label or a deletion's update
        problem = problems_of(kind, spec, egress)
        if problem is not None:
            raise kopf.AdmissionError(problem, code=422)
